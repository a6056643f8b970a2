"""lifecycle's purchase steps: where each customer stands as customers are created and buy.

The events move a customer forward: prospect (created) → new (first purchase) →
active (a repeat purchase). A purchase event for a customer lifecycle has not
seen created yet starts the customer at the stage the purchase implies. Renewed
buying brings a customer back: a purchase made after the customer became at_risk
moves it to active, after it churned to won_back. Everything else (loyal, at_risk,
churned) is the configurable rules' work, evaluated by the sweep (sweeps.py,
rules.py). Each transition keeps its reason: the step's name as its rule and the
purchase count it saw as its values (no rule version: these steps are fixed).

A voided purchase (crm.identify.transaction.voided, recorded in error) lowers the
customer's purchase count to the one identify announces, and never moves the stage
back; a refund changes no count and lifecycle keeps no revenue, so it is not followed.

A merge (crm.identify.customer.merged) gives the survivor the most engaged
stage of the group in MERGE_RANK order, or the stage its combined purchase count
implies if that is further; the histories are combined in time order. Events
that name a merged id afterwards reach the handlers naming its survivor (the
consumer framework maps them, shared/events/consumer.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import aliases
from services.lifecycle.stages import repository
from shared.db.database import utcnow
from shared.db.driver import writes_together
from shared.events.consumer import caused_by
from shared.events.contracts import (
    CustomerCreated,
    FeedbackReceived,
    TicketEscalated,
    TransactionRecorded,
    TransactionVoided,
)
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit, emit_many, flush_events

# The purchase steps move only up this order (a stage past active is the rules' and stays).
RANK = {None: -1, "prospect": 0, "new": 1, "active": 2}
# A merge keeps the group's most engaged stage (the next sweep re-evaluates it anyway).
MERGE_RANK = {None: -1, "prospect": 0, "new": 1, "churned": 2, "at_risk": 3, "active": 4, "won_back": 5, "loyal": 6}
# Renewed buying: a purchase after the customer entered one of these stages.
RENEWED = {"at_risk": "active", "churned": "won_back"}
STEP_NAMES = {"prospect": "created", "new": "first_purchase", "active": "repeat_purchase"}


def _stage_for(count: int) -> str:
    return "prospect" if count <= 0 else "new" if count == 1 else "active"


def _target(data: CustomerCreated | TransactionRecorded, known_count: int) -> tuple[str, int]:
    if isinstance(data, CustomerCreated):
        return "prospect", known_count
    count = max(known_count, data.purchase_count)
    return _stage_for(max(count, 1)), count


def _transition(
    session: AsyncSession, event: Event[Any], cid: str, from_stage, to_stage: str, at, rule: str, values: dict
) -> dict:
    """Announce a stage change (caused by `event`) and return its history row."""

    row = {
        "customer_id": cid,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "at": at,
        "event_id": event.id,
        "rule": rule,
        "rule_version": None,
        "values": values,
        "historical": False,
    }
    with caused_by(event):
        announce(session, row, cause_event_id=event.id)
    return row


def announce(session: AsyncSession, row: dict[str, Any], *, cause_event_id: str) -> None:
    """crm.lifecycle.stage.changed for a history row, with its reason."""

    emit(session, STAGE_CHANGED, _stage_changed(row, cause_event_id), subject=row["customer_id"])


def announce_many(session: AsyncSession, rows: list[dict[str, Any]], *, cause_event_id: str) -> None:
    """announce() for a sweep's chunk: one pass, no pydantic model per event (emit_many)."""

    payloads = [_stage_changed(row, cause_event_id) for row in rows]
    emit_many(session, STAGE_CHANGED, payloads, [row["customer_id"] for row in rows])


STAGE_CHANGED = "crm.lifecycle.stage.changed"
_REASON = ("customer_id", "from_stage", "to_stage", "at", "rule", "rule_version", "historical")


def _stage_changed(row: dict[str, Any], cause_event_id: str) -> dict[str, Any]:
    data = {name: row[name] for name in _REASON}
    data.update(values=row["values"] or {}, cause_event_id=cause_event_id)
    return data


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
            current = state[cid] = {
                "customer_id": cid,
                "stage": None,
                "purchase_count": 0,
                "updated_at": now,
                "stage_since": None,
            }
            new_ids.add(cid)
        target, count = _target(data, current["purchase_count"])
        current["purchase_count"] = count
        stage = current["stage"]
        if stage in RENEWED and isinstance(data, TransactionRecorded):
            since = current["stage_since"]
            if since is not None and data.occurred_at <= since:
                continue  # a purchase from before the customer went quiet (an import, a late event)
            target, rule = RENEWED[stage], "renewed_buying"
        elif stage not in RANK or RANK[target] <= RANK[stage]:
            continue
        else:
            rule = STEP_NAMES[target]
        values = {"purchase_count": count}
        transitions.append(_transition(session, event, cid, stage, target, now, rule, values))
        current["stage"] = target
        current["updated_at"] = now
        current["stage_since"] = now
    # On PostgreSQL the stage rows, their history and the stage.changed events' outbox rows
    # go to the server as one statement (none reads what another writes).
    async with writes_together(session):
        await repository.save_stages(
            session, [row for cid, row in state.items() if cid in new_ids or row != existing.get(cid)]
        )
        await repository.add_transitions(session, transitions)
        await flush_events(session)


def _customer_of(event: Event[Any]) -> str:
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
    target = max((row["stage"] for row in known.values()), key=lambda s: MERGE_RANK.get(s, -1), default=None)
    if MERGE_RANK.get(_stage_for(count), -1) > MERGE_RANK.get(target, -1):
        target = _stage_for(count)
    now = utcnow()
    count = max(count, current["purchase_count"] if current else 0)
    row = {
        "customer_id": survivor,
        "stage": from_stage,
        "purchase_count": count,
        "updated_at": now,
        "stage_since": current["stage_since"] if current else None,
    }
    await repository.absorb_merged(session, merged_ids=merged, survivor_id=survivor)
    await repository.absorb_merged_signals(session, merged_ids=merged, survivor_id=survivor)
    if target is not None and MERGE_RANK.get(target, -1) > MERGE_RANK.get(from_stage, -1):
        row["stage"] = target
        row["stage_since"] = now
        values = {"purchase_count": count, "merged": merged}
        transition = _transition(session, event, survivor, from_stage, target, now, "merge", values)
        await repository.add_transitions(session, [transition])
    await repository.save_stages(session, [row])


async def lifecycle_of(*, session: AsyncSession, customer_id: str) -> dict:
    stage, history = await repository.read_lifecycle(session, customer_id)
    if stage is None:
        raise await aliases.not_found_or_merged(session, customer_id)
    return {
        "customer_id": customer_id,
        "stage": stage["stage"],
        "purchase_count": stage["purchase_count"],
        "stage_since": stage["stage_since"],
        "churn_risk": _risk_of(stage),
        "history": [
            {
                "from": h["from_stage"],
                "to": h["to_stage"],
                "at": h["at"],
                "event_id": h["event_id"],
                "rule": h["rule"],
                "rule_version": h["rule_version"],
                "values": h["values"] or {},
                "historical": bool(h["historical"]),
            }
            for h in history
        ],
    }


def _risk_of(stage: Any) -> dict[str, Any] | None:
    if stage["churn_risk"] is None:
        return None
    return {
        "risk": stage["churn_risk"],
        "band": stage["churn_band"],
        "clv_at_risk": stage["clv_at_risk"],
        "drivers": stage["risk_drivers"] or [],
        "at": stage["risk_at"],
    }


async def customers_in_stage(*, session: AsyncSession, stage: str | None, after_id: str | None, limit: int) -> list:
    """Customers in `stage` (every customer with a stage when None), in id order, with since when."""

    return list(await repository.customers_in_stage(session, stage=stage, after_id=after_id, limit=limit))


# --- signals: feedback and escalations the rules count ---------------------------------------

Signals = FeedbackReceived | TicketEscalated
DETRACTOR_NPS = 6  # 0-6 is a detractor
HIGH_EFFORT = 4  # effort 1 (none) to 5 (a lot): 4 and 5 are high
HARD_CES = 2  # CES 1-7, 7 = very easy: 1 and 2 are high effort


async def record_signals(*, session: AsyncSession, events: list[Event[Signals]]) -> None:
    """Keep each customer's newest detractor and high-effort answers and escalations; the next
    sweep's rules and churn risk read them."""

    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.data
        cid = _customer_of(event)
        row = rows.setdefault(cid, dict.fromkeys(repository.SIGNAL_COLUMNS) | {"customer_id": cid, "escalations": 0})
        if isinstance(data, TicketEscalated):
            row["escalations"] += 1
            _newest(row, "escalated_at", data.escalated_at, None, None)
            continue
        if data.nps is not None and data.nps <= DETRACTOR_NPS:
            _newest(row, "detractor_at", data.received_at, "nps", data.nps)
        effort = _high_effort(data)
        if effort is not None:
            _newest(row, "high_effort_at", data.received_at, "effort", effort)
    await repository.record_signals(session, list(rows.values()))


def _high_effort(data: FeedbackReceived) -> str | None:
    if data.effort is not None and data.effort >= HIGH_EFFORT:
        return f"effort {data.effort}"
    if data.ces is not None and data.ces <= HARD_CES:
        return f"ces {data.ces}"
    return None


def _newest(row: dict[str, Any], at_name: str, at: Any, value_name: str | None, value: Any) -> None:
    if row[at_name] is None or at > row[at_name]:
        row[at_name] = at
        if value_name is not None:
            row[value_name] = value


# --- at risk ---------------------------------------------------------------------------------


async def at_risk(
    *,
    session: AsyncSession,
    after: tuple[float, str] | None,
    limit: int,
    stages: list[str] | None,
    band: str | None,
    min_risk: float | None,
) -> list[dict[str, Any]]:
    """Customers by CLV at risk (predicted CLV × churn risk), highest first, as the last sweep left them."""

    rows = await repository.at_risk(session, after=after, limit=limit, stages=stages, band=band, min_risk=min_risk)
    return [dict(row) for row in rows]
