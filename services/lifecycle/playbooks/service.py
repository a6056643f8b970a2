"""Win-back and retention playbooks (issue 15 §3).

A playbook starts when a customer enters one of its trigger stages (at_risk, churned: read
from lifecycle's own crm.lifecycle.stage.changed) and only when

- the playbook is enabled and the transition is after it was (last) enabled;
- the transition is not `historical` (the first sweep over imported history records stages
  without firing playbooks, shared/decisions.md);
- the customer's last purchase is within the playbook's look-back (default 365 days) of the
  transition: old imported customers are not mailed en masse;
- the customer's predicted CLV (identify's score, in lifecycle's profiles) is at or above the
  playbook's threshold, when it has one.

A customer enters at most once per entry into a trigger stage (one entry per playbook and
stage.changed event); moving on from one of a playbook's trigger stages to another
(at_risk → churned) continues the same episode and does not enter it again.

Each entry is drawn into the treatment group or the holdout by
`sha256(f"{seed}:{customer_id}")` (shared/holdout.py, as value's campaigns) and announced as
crm.lifecycle.playbook.entered. For the treatment group only, the playbook asks value for its
retention offer (crm.lifecycle.playbook.offer_requested; value issues it and measures the
playbook against its holdout, `GET /v1/playbooks/{id}/results`) and/or asks for an outreach
ticket in its queue (`outreach`, `outreach_queue` on playbook.entered; lifecycle's tickets open
it). The ticket goes to the customer's account manager when network names one
(crm.network.relation.started/ended, relation `account_manager_of`: `outreach_assignee_id`, a
read model here), else the queue takes it.

lifecycle cannot check a template id (value announces no templates); value records an unknown
one as the member's offer outcome (`unknown_template`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import aliases, profiles
from services.lifecycle.playbooks import repository
from services.lifecycle.playbooks.schemas import PlaybookCreate, PlaybookUpdate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.consumer import caused_by
from shared.events.contracts import StageChanged
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.holdout import in_holdout
from shared.http.errors import Conflict, NotFound, field_error

ENTERED = "crm.lifecycle.playbook.entered"
OFFER_REQUESTED = "crm.lifecycle.playbook.offer_requested"
RELATION_STARTED = "crm.network.relation.started"
RELATION_ENDED = "crm.network.relation.ended"


# --- configuration --------------------------------------------------------------------------


async def create(*, session: AsyncSession, data: PlaybookCreate) -> dict[str, Any]:
    now = utcnow()
    row = {
        **data.model_dump(),
        "id": uuid7(),
        "seed": data.seed or secrets.token_hex(16),
        "enabled_at": now if data.enabled else None,
        "created_at": now,
        "updated_at": now,
    }
    await repository.insert_playbook(session, row)
    return row


async def get(*, session: AsyncSession, playbook_id: str, for_update: bool = False) -> dict[str, Any]:
    row = await repository.read_playbook(session, playbook_id, for_update=for_update)
    if row is None:
        raise NotFound(f"no playbook with id {playbook_id}")
    return row


async def playbooks(*, session: AsyncSession, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    return await repository.playbooks_page(session, after_id=after_id, limit=limit)


async def update(*, session: AsyncSession, playbook_id: str, data: PlaybookUpdate) -> dict[str, Any]:
    """Change a playbook. Enabling a disabled one starts its clock again: only transitions
    after now fire it. Nothing is written when the change is refused."""

    for name in PlaybookUpdate.REQUIRED:
        if name in data.model_fields_set and getattr(data, name) is None:
            raise field_error(f"body.{name}", "may be left out, but not null")
    playbook = await get(session=session, playbook_id=playbook_id, for_update=True)
    values = {name: getattr(data, name) for name in data.model_fields_set}
    changed = {**playbook, **values}
    if changed["template_id"] is None and changed["outreach_queue"] is None:
        raise Conflict(
            f"playbook {playbook_id} would do nothing: it needs a retention offer (`template_id`), an "
            "`outreach_queue` or both",
            error="playbook_does_nothing",
        )
    now = utcnow()
    if values.get("enabled") and not playbook["enabled"]:
        values["enabled_at"] = now
    if values:
        values["updated_at"] = now
        await repository.update_playbook(session, playbook_id, values)
    return {**playbook, **values}


async def entries(
    *, session: AsyncSession, playbook_id: str, group: str | None, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    await get(session=session, playbook_id=playbook_id)
    return await repository.entries_page(session, playbook_id=playbook_id, group=group, after_id=after_id, limit=limit)


async def customer_entries(
    *, session: AsyncSession, customer_id: str, before_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The playbooks a customer entered, newest first; an unknown customer is 404, a merged
    one 409 `customer_merged` naming the survivor (whose list holds the entries now)."""

    rows = await repository.entries_of_customer(session, customer_id=customer_id, before_id=before_id, limit=limit)
    if not rows and before_id is None and not await repository.has_stage(session, customer_id):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows


# --- firing -----------------------------------------------------------------------------------


def _fires(playbook: dict[str, Any], change: StageChanged) -> bool:
    """The transition enters one of the playbook's trigger stages, after it was enabled."""

    stages = playbook["trigger_stages"]
    enabled_at = playbook["enabled_at"]
    return (
        change.to_stage in stages
        and change.from_stage not in stages
        and enabled_at is not None
        and change.at > enabled_at
    )


def _qualifies(playbook: dict[str, Any], profile: dict[str, Any] | None, at: datetime) -> bool:
    """A purchase within the look-back, and the predicted CLV at or above the threshold."""

    last = profile["last_purchase_at"] if profile else None
    if last is None or last < at - timedelta(days=playbook["lookback_days"]):
        return False
    threshold = playbook["min_predicted_clv"]
    if threshold is None:
        return True
    clv = profile["predicted_clv"] if profile else None
    return clv is not None and clv >= threshold


async def apply_stage_changes(session: AsyncSession, events: list[Event[StageChanged]]) -> None:
    """A micro-batch of lifecycle's stage changes: the playbooks they start (a constant number
    of queries: the enabled playbooks, the customers' profiles, the entries made already)."""

    changes = [e for e in events if not e.data.historical and e.data.from_stage != e.data.to_stage]
    if not changes:
        return
    enabled = await repository.enabled_playbooks(session)
    fired = [(event, playbook) for event in changes for playbook in enabled if _fires(playbook, event.data)]
    if not fired:
        return
    known = await profiles.of(session, (event.data.customer_id for event, _ in fired))
    managers = await repository.account_managers(session, [event.data.customer_id for event, _ in fired])
    done = await repository.entered_transitions(session, list({event.id for event, _ in fired}))
    rows: list[dict[str, Any]] = []
    for event, playbook in fired:
        change = event.data
        if (playbook["id"], event.id) in done or not _qualifies(playbook, known.get(change.customer_id), change.at):
            continue
        with caused_by(event):
            rows.append(_enter(session, playbook, event, managers.get(change.customer_id)))
    await repository.insert_entries(session, rows)


def _enter(
    session: AsyncSession, playbook: dict[str, Any], event: Event[StageChanged], manager: str | None
) -> dict[str, Any]:
    """The customer enters the playbook: its group, the events announcing it, the entry row
    (an outreach ticket for `manager`, the customer's account manager, when it has one)."""

    change = event.data
    cid = change.customer_id
    treatment = not in_holdout(playbook["seed"], cid, playbook["holdout_share"])
    template_id = playbook["template_id"] if treatment else None
    queue = playbook["outreach_queue"] if treatment else None
    entry = {
        "id": uuid7(),
        "playbook_id": playbook["id"],
        "customer_id": cid,
        "group": "treatment" if treatment else "holdout",
        "stage": change.to_stage,
        "stage_event_id": event.id,
        "entered_at": change.at,
        "template_id": template_id,
        "outreach_queue": queue,
    }
    emit(
        session,
        ENTERED,
        {
            "playbook_id": playbook["id"],
            "customer_id": cid,
            "group": entry["group"],
            "entered_at": change.at,
            "outreach": queue is not None,
            "outreach_queue": queue,
            # The account manager network names (else the queue alone takes the ticket).
            "outreach_assignee_id": manager if queue is not None else None,
            "stage": change.to_stage,
            "playbook_name": playbook["name"],
        },
        subject=cid,
    )
    if template_id is not None:
        emit(
            session,
            OFFER_REQUESTED,
            {
                "request_id": entry["id"],
                "playbook_id": playbook["id"],
                "customer_id": cid,
                "template_id": template_id,
                "requested_at": change.at,
            },
            subject=cid,
        )
    return entry


# --- merges -----------------------------------------------------------------------------------


async def follow_playbooks_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' playbook entries become the survivor's."""

    await repository.move_entries(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)


# --- account managers ---------------------------------------------------------------------------


async def apply_relations(session: AsyncSession, events: list[Event[Any]]) -> None:
    """network's relations, a micro-batch in stream order: the current `account_manager_of`
    ones (the others are not lifecycle's business). A relation started and ended within the
    batch is added, then dropped."""

    started, ended = [], []
    for event in events:
        data = event.data
        if data.relation != "account_manager_of":
            continue
        if event.type == RELATION_STARTED:
            started.append(
                {
                    "relation_id": data.relation_id,
                    "customer_id": data.customer_id,
                    "stakeholder_id": data.stakeholder_id,
                    "started_at": data.started_at,
                }
            )
        else:
            ended.append(data.relation_id)
    await repository.add_account_managers(session, started)
    await repository.drop_account_managers(session, ended)


async def follow_account_managers_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' account manager relations become the survivor's
    (network ends all but one of them and announces it: the read model follows those events)."""

    await repository.move_account_managers(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)
