"""lifecycle's rules: where each customer stands, from prospect to active.

Stages only move forward here: prospect (created) → new (first purchase) →
active (a repeat purchase). A purchase event for a customer lifecycle has not
seen created yet starts the customer at the stage the purchase implies. The
stages after active (loyal, at risk, churned, won back) come with later work.

A voided purchase (crm.identify.transaction.voided, recorded in error) lowers the
customer's purchase count to the one identify announces, and never moves the stage
back; a refund changes no count and lifecycle keeps no revenue, so it is not followed.

A merge (crm.identify.customer.merged) gives the survivor the most advanced
stage of the group in RANK order, or the stage its combined purchase count
implies if that is further; the histories are combined in time order. Events
that name a merged id afterwards reach the handlers naming its survivor (the
consumer framework maps them, shared/events/consumer.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle import repository
from services.lifecycle.models import aliases
from shared.db.database import utcnow
from shared.events.consumer import caused_by
from shared.events.contracts import CustomerCreated, TransactionRecorded, TransactionVoided
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit

RANK = {None: -1, "prospect": 0, "new": 1, "active": 2}


def _stage_for(count: int) -> str:
    return "prospect" if count <= 0 else "new" if count == 1 else "active"


def _target(data: CustomerCreated | TransactionRecorded, known_count: int) -> tuple[str, int]:
    if isinstance(data, CustomerCreated):
        return "prospect", known_count
    count = max(known_count, data.purchase_count)
    return _stage_for(max(count, 1)), count


def _transition(session: AsyncSession, event: Event[Any], cid: str, from_stage, to_stage: str, at) -> dict:
    """Announce a stage change (caused by `event`) and return its history row."""

    with caused_by(event):
        emit(
            session,
            "crm.lifecycle.stage.changed",
            {"customer_id": cid, "from_stage": from_stage, "to_stage": to_stage, "at": at, "cause_event_id": event.id},
            subject=cid,
        )
    return {"customer_id": cid, "from_stage": from_stage, "to_stage": to_stage, "at": at, "event_id": event.id}


Purchases = CustomerCreated | TransactionRecorded | TransactionVoided


async def apply_events(*, session: AsyncSession, events: list[Event[Purchases]]) -> None:
    """Apply a micro-batch in stream order with a constant number of statements."""

    customer_ids = {_customer_of(event) for event in events}
    existing = await repository.stages_of(session, customer_ids)
    state = {cid: dict(row) for cid, row in existing.items()}
    new_ids: set[str] = set()
    transitions: list[dict] = []
    now = utcnow()
    for event in events:
        cid = _customer_of(event)
        current = state.get(cid)
        data = event.data
        if isinstance(data, TransactionVoided):
            # A purchase recorded in error leaves the count; the stage stays where it is.
            if current is not None:
                current["purchase_count"] = data.purchase_count
                current["updated_at"] = now
            continue
        if current is None:
            current = state[cid] = {"customer_id": cid, "stage": None, "purchase_count": 0, "updated_at": now}
            new_ids.add(cid)
        target, count = _target(data, current["purchase_count"])
        current["purchase_count"] = count
        if RANK[target] <= RANK[current["stage"]]:
            continue
        transitions.append(_transition(session, event, cid, current["stage"], target, now))
        current["stage"] = target
        current["updated_at"] = now
    await repository.insert_stages(session, [state[cid] for cid in new_ids])
    await repository.update_stages(
        session,
        [row for cid, row in state.items() if cid not in new_ids and row != existing.get(cid)],
    )
    await repository.insert_transitions(session, transitions)


def _customer_of(event: Event[Purchases]) -> str:
    customer_id = event.customer_id
    assert customer_id is not None  # each of these contracts names its customer
    return customer_id


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the survivor takes the most advanced stage and every history."""

    survivor, merged, event = merge.survivor_id, merge.merged_ids, merge.event
    known = await repository.stages_of(session, {survivor, *merged})
    count = event.data.purchase_count
    if count is None:  # an older producer: add up what lifecycle saw
        count = sum(row["purchase_count"] for row in known.values())
    current = known.get(survivor)
    from_stage = current["stage"] if current else None
    target = max((row["stage"] for row in known.values()), key=lambda s: RANK.get(s, -1), default=None)
    if RANK.get(_stage_for(count), -1) > RANK.get(target, -1):
        target = _stage_for(count)
    now = utcnow()
    count = max(count, current["purchase_count"] if current else 0)
    row = {"customer_id": survivor, "stage": from_stage, "purchase_count": count, "updated_at": now}
    await repository.absorb_merged(session, merged_ids=merged, survivor_id=survivor)
    if target is not None and RANK.get(target, -1) > RANK.get(from_stage, -1):
        row["stage"] = target
        await repository.insert_transitions(session, [_transition(session, event, survivor, from_stage, target, now)])
    if current is None:
        await repository.insert_stages(session, [row])
    else:
        await repository.update_stages(session, [row])


async def lifecycle_of(*, session: AsyncSession, customer_id: str) -> dict:
    stage, history = await repository.read_lifecycle(session, customer_id)
    if stage is None:
        raise await aliases.not_found_or_merged(session, customer_id)
    return {
        "customer_id": customer_id,
        "stage": stage["stage"],
        "purchase_count": stage["purchase_count"],
        "history": [
            {"from": h["from_stage"], "to": h["to_stage"], "at": h["at"], "event_id": h["event_id"]} for h in history
        ],
    }


async def customers_in_stage(*, session: AsyncSession, stage: str | None, after_id: str | None, limit: int) -> list:
    """Customers in `stage` (every customer with a stage when None), in id order, with since when."""

    return list(await repository.customers_in_stage(session, stage=stage, after_id=after_id, limit=limit))
