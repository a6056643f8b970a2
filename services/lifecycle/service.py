"""lifecycle's rules: where each customer stands, from prospect to active.

Stages only move forward here: prospect (created) → new (first purchase) →
active (a repeat purchase). A purchase event for a customer lifecycle has not
seen created yet starts the customer at the stage the purchase implies. The
stages after active (loyal, at risk, churned, won back) come with later work.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle import repository
from shared.consumer import caused_by
from shared.db import utcnow
from shared.errors import NotFound
from shared.events import CloudEvent
from shared.messaging import emit

RANK = {None: -1, "prospect": 0, "new": 1, "active": 2}


def _target(event: CloudEvent, known_count: int) -> tuple[str, int]:
    if event.type == "crm.identify.customer.created":
        return "prospect", known_count
    count = max(known_count, int(event.data["purchase_count"]))
    return ("new" if count <= 1 else "active"), count


async def apply_events(*, session: AsyncSession, events: list[CloudEvent]) -> None:
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
        if current is None:
            current = state[cid] = {"customer_id": cid, "stage": None, "purchase_count": 0, "updated_at": now}
            new_ids.add(cid)
        target, count = _target(event, current["purchase_count"])
        current["purchase_count"] = count
        if RANK[target] <= RANK[current["stage"]]:
            continue
        transitions.append(
            {"customer_id": cid, "from_stage": current["stage"], "to_stage": target, "at": now, "event_id": event.id}
        )
        with caused_by(event):
            emit(
                session,
                "crm.lifecycle.stage.changed",
                {"customer_id": cid, "from_stage": current["stage"], "to_stage": target, "at": now,
                 "cause_event_id": event.id},
                subject=cid,
            )
        current["stage"] = target
        current["updated_at"] = now
    await repository.insert_stages(session, [state[cid] for cid in new_ids])
    await repository.update_stages(
        session,
        [row for cid, row in state.items() if cid not in new_ids and row != existing.get(cid)],
    )
    await repository.insert_transitions(session, transitions)


def _customer_of(event: CloudEvent) -> str:
    return event.data["id"] if event.type == "crm.identify.customer.created" else event.data["customer_id"]


async def lifecycle_of(*, session: AsyncSession, customer_id: str) -> dict:
    stage, history = await repository.read_lifecycle(session, customer_id)
    if stage is None:
        raise NotFound(f"no customer with id {customer_id}")
    return {
        "customer_id": customer_id,
        "stage": stage["stage"],
        "purchase_count": stage["purchase_count"],
        "history": [
            {"from": h["from_stage"], "to": h["to_stage"], "at": h["at"], "event_id": h["event_id"]} for h in history
        ],
    }
