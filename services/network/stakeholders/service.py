"""Stakeholders, their relations to customers with every period kept, and what their
customers are worth (partner performance)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.network.models import aliases, known_customers
from services.network.stakeholders import repository
from services.network.stakeholders.models import Stakeholder, profiles
from services.network.stakeholders.schemas import (
    HISTORY_LIMIT,
    RELATION_KINDS,
    RelationCreate,
    StakeholderCreate,
    StakeholderUpdate,
)
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.contracts import TransactionRecorded, TransactionRefunded, TransactionVoided
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.caller import Caller
from shared.http.errors import Conflict, NotFound, field_error
from shared.settings import NetworkSettings, current_settings

STARTED = "crm.network.relation.started"
ENDED = "crm.network.relation.ended"
RECORDED = "crm.identify.transaction.recorded"
REFUNDED = "crm.identify.transaction.refunded"
VOIDED = "crm.identify.transaction.voided"
MERGE_ACTOR = "merge"

# --- stakeholders --------------------------------------------------------------------


async def create_stakeholder(*, session: AsyncSession, data: StakeholderCreate) -> Stakeholder:
    stakeholder = Stakeholder(
        id=uuid7(),
        kind=data.kind,
        name=data.name,
        email=data.email,
        organisation=data.organisation,
        notes=data.notes,
        created_at=utcnow(),
    )
    session.add(stakeholder)
    await session.flush()
    # Not about a customer: the CloudEvent has no subject.
    emit(
        session,
        "crm.network.stakeholder.created",
        {field: getattr(stakeholder, field) for field in ("id", "kind", "name", "email", "created_at")},
    )
    return stakeholder


def _hidden(caller: Caller | None, stakeholder_id: str) -> bool:
    # Another partner's record is as unknown to a partner as a missing one: the same 404.
    return caller is not None and caller.partner_only and stakeholder_id != caller.partner_id


async def get_stakeholder(*, session: AsyncSession, stakeholder_id: str, caller: Caller | None = None):
    stakeholder = (
        None if _hidden(caller, stakeholder_id) else await repository.read_stakeholder(session, stakeholder_id)
    )
    if stakeholder is None:
        raise NotFound(f"no stakeholder with id {stakeholder_id}")
    return stakeholder


async def update_stakeholder(*, session: AsyncSession, stakeholder_id: str, data: StakeholderUpdate):
    """Change the fields sent (`null` clears an optional one); announce it when anything changed
    (an empty body, or the values it has already, change nothing and announce nothing)."""

    current = await get_stakeholder(session=session, stakeholder_id=stakeholder_id)
    sent = data.model_dump(include=data.model_fields_set)
    if "name" in sent and sent["name"] is None:
        raise field_error("body.name", "a stakeholder's name cannot be cleared")
    changed = {name: value for name, value in sent.items() if current[name] != value}
    if not changed:
        return current
    now = utcnow()
    await repository.update_stakeholder(session, stakeholder_id, {**changed, "updated_at": now})
    updated = {**current, **changed, "updated_at": now}
    emit(
        session,
        "crm.network.stakeholder.updated",
        {
            "id": stakeholder_id,
            "kind": updated["kind"],
            "name": updated["name"],
            "email": updated["email"],
            "changed": sorted(changed),
            "updated_at": now,
        },
    )
    return updated


# --- relations to customers --------------------------------------------------------------


def _announce(session: AsyncSession, subject: str, row: dict[str, Any], **extra: Any) -> None:
    emit(
        session,
        subject,
        {
            "relation_id": row["id"],
            "customer_id": row["customer_id"],
            "stakeholder_id": row["stakeholder_id"],
            "stakeholder_kind": row["stakeholder_kind"],
            "relation": row["relation"],
            "started_at": row["started_at"],
            **extra,
        },
        subject=row["customer_id"],
    )


def _end(session: AsyncSession, row: dict[str, Any], *, at: datetime, by: str | None, reason: str) -> dict[str, Any]:
    """The period ended (its row changed by the caller: `repository.end_relations`), announced."""

    ended = {**row, "ended_at": max(at, row["started_at"]), "ended_by": by, "ended_reason": reason}
    _announce(session, ENDED, ended, changed_by=by, ended_at=ended["ended_at"], reason=reason)
    return ended


def _ending(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["id"],
        "ended_at": row["ended_at"],
        "ended_by": row["ended_by"],
        "ended_reason": row["ended_reason"],
    }


async def _known_customer(session: AsyncSession, customer_id: str) -> None:
    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise NotFound(f"no customer with id {customer_id}")


async def start_relation(
    *, session: AsyncSession, customer_id: str, data: RelationCreate, caller: Caller
) -> dict[str, Any]:
    """A new period of a relation. The stakeholder's kind must fit the relation; a customer
    has at most one current account manager (a new one ends the previous: `replaced`)."""

    await _known_customer(session, customer_id)
    stakeholder = await repository.read_stakeholder(session, data.stakeholder_id)
    if stakeholder is None:
        raise field_error("body.stakeholder_id", f"no stakeholder with id {data.stakeholder_id}")
    allowed = RELATION_KINDS[data.relation]
    if stakeholder["kind"] not in allowed:
        raise field_error(
            "body.relation",
            f"{data.relation} is held by a stakeholder of kind {' or '.join(sorted(allowed))}; "
            f"stakeholder {data.stakeholder_id} is a {stakeholder['kind']}",
        )
    now = utcnow()
    started_at = data.started_at or now
    if started_at > now:
        raise field_error("body.started_at", "a relation cannot start in the future")
    current = await repository.current_relations(session, [customer_id], relation=data.relation)
    same = [r for r in current if r["stakeholder_id"] == data.stakeholder_id]
    if same:
        raise Conflict(
            f"stakeholder {data.stakeholder_id} is already {data.relation} customer {customer_id} "
            f"(relation {same[0]['id']}, since {same[0]['started_at'].isoformat()})",
            error="relation_current",
        )
    if data.relation == "account_manager_of":
        replaced = [_end(session, dict(r), at=started_at, by=caller.actor, reason="replaced") for r in current]
        await repository.end_relations(session, [_ending(r) for r in replaced])
    row = {
        "id": uuid7(),
        "customer_id": customer_id,
        "stakeholder_id": data.stakeholder_id,
        "stakeholder_kind": stakeholder["kind"],
        "relation": data.relation,
        "started_at": started_at,
        "started_by": caller.actor,
        "ended_at": None,
        "ended_by": None,
        "ended_reason": None,
    }
    await repository.insert_relation(session, row)
    _announce(session, STARTED, row, changed_by=caller.actor)
    return row


async def end_relation(*, session: AsyncSession, customer_id: str, relation_id: str, caller: Caller) -> dict[str, Any]:
    """End a current relation now; the period stays in the history."""

    await aliases.refuse_merged(session, customer_id)
    row = await repository.read_relation(session, relation_id)
    if row is None or row["customer_id"] != customer_id:
        raise NotFound(f"customer {customer_id} has no relation {relation_id}")
    if row["ended_at"] is not None:
        raise Conflict(f"relation {relation_id} ended at {row['ended_at'].isoformat()}", error="relation_ended")
    ended = _end(session, dict(row), at=utcnow(), by=caller.actor, reason="ended")
    await repository.end_relations(session, [_ending(ended)])
    return ended


async def _refuse_empty(session: AsyncSession, customer_id: str, caller: Caller) -> None:
    """A customer with nothing to show: 404 for an unknown one, 409 for a merged one; a known
    customer's empty network is fine. A partner gets 404 for any customer it has no relation
    with, merged or not: nothing tells it the customer exists."""

    if caller.partner_only:
        raise NotFound(f"no customer with id {customer_id}")
    survivor = await aliases.survivor_of(session, customer_id)
    if survivor or not await known_customers.contains(session, customer_id):
        raise await aliases.not_found_or_merged(session, customer_id)


async def customer_network(
    *, session: AsyncSession, customer_id: str, at: datetime | None, caller: Caller
) -> dict[str, Any]:
    """The relations current now (or at `at`) with their stakeholders, and the history.

    A partner's key sees only its own stakeholder's relations, and a customer it has none
    with is as unknown to it as a missing one."""

    mine = caller.partner_id if caller.partner_only else None
    history = await repository.relation_periods(
        session, customer_id, limit=HISTORY_LIMIT, stakeholder_id=mine, newest_first=True
    )
    if not history:
        await _refuse_empty(session, customer_id, caller)
    if at is None:
        current = [r for r in history if r["ended_at"] is None]
        if len(history) == HISTORY_LIMIT:  # a long history: the current ones from the table
            current = await repository.current_relations(session, [customer_id], stakeholder_id=mine)
        current = sorted(current, key=lambda r: (r["started_at"], r["id"]))
    else:
        current = await repository.relations_at(session, customer_id, at, stakeholder_id=mine)
    stakeholders = await repository.stakeholders_by_id(session, [r["stakeholder_id"] for r in current])
    return {
        "customer_id": customer_id,
        "at": at,
        "current": [{**r, "stakeholder": stakeholders[r["stakeholder_id"]]} for r in current],
        "history": history,
    }


async def relations_page(
    *, session: AsyncSession, customer_id: str, caller: Caller, after_id: str | None, limit: int
) -> list[Any]:
    mine = caller.partner_id if caller.partner_only else None
    rows = await repository.relation_periods(session, customer_id, limit=limit, after_id=after_id, stakeholder_id=mine)
    if not rows and after_id is None:
        await _refuse_empty(session, customer_id, caller)
    return rows


# --- merges ---------------------------------------------------------------------------------


async def follow_relations_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' relations become the survivor's.

    The same current relation held twice (one stakeholder, one relation) collapses into the
    earliest started; of several current account managers the survivor keeps its own newest,
    else the newest. The others end (`merged`, announced), so their periods stay in the history.
    """

    group = [merge.survivor_id, *merge.merged_ids]
    rows = [dict(r) for r in await repository.relations_of_customers(session, group)]
    if not rows:
        return
    await repository.move_relations(session, merge.merged_ids, merge.survivor_id)
    current = [r for r in rows if r["ended_at"] is None]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in current:  # oldest start first
        by_key[(row["stakeholder_id"], row["relation"])].append(row)
    kept = [same[0] for same in by_key.values()]
    managers = sorted(
        (r for r in kept if r["relation"] == "account_manager_of"),
        key=lambda r: (r["customer_id"] == merge.survivor_id, r["started_at"], r["id"]),
    )
    keep_ids = {r["id"] for r in kept} - {r["id"] for r in managers[:-1]}
    ending = []
    for row in current:
        if row["id"] not in keep_ids:
            row["customer_id"] = merge.survivor_id
            ending.append(_ending(_end(session, row, at=merge.at, by=MERGE_ACTOR, reason="merged")))
    await repository.end_relations(session, ending)


async def follow_purchases_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' purchases count for the survivor."""

    await repository.move_purchases(session, merge.merged_ids, merge.survivor_id)


# --- what the customers are worth --------------------------------------------------------------


async def apply_customer_values(session: AsyncSession, events: list[Event[Any]]) -> None:
    """identify's purchases (reporting amounts), refunds (lower revenue) and voids (out),
    and its scores (segment, predicted CLV), a micro-batch at a time.

    A refund or void follows its purchase in the stream (identify commits them after it)."""

    recorded, refunds, voids, scores = [], [], [], []
    for event in events:
        if event.type == RECORDED:
            recorded.append(_purchase(event.data))
        elif event.type == REFUNDED:
            refunds.append({"key": event.data.transaction_id, "refund": _reporting(event.data)})
        elif event.type == VOIDED:
            voids.append(event.data.transaction_id)
        else:
            scores.append(event)
    await repository.record_purchases(session, recorded)
    await repository.refund_purchases(session, refunds)
    await repository.void_purchases(session, voids)
    await profiles.apply(session, scores)


def _reporting(data: TransactionRecorded | TransactionRefunded | TransactionVoided):
    return abs(data.reporting_amount if data.reporting_amount is not None else data.amount)


def _purchase(data: TransactionRecorded) -> dict[str, Any]:
    amount = data.reporting_amount if data.reporting_amount is not None else data.amount
    return {
        "transaction_id": data.id,
        "customer_id": data.customer_id,
        "amount": amount,
        "refunded": 0,
        "voided": False,
        "occurred_at": data.occurred_at,
    }


def _active_since() -> datetime:
    return utcnow() - timedelta(days=current_settings(NetworkSettings).active_customer_days)


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


async def stakeholder_customers(
    *,
    session: AsyncSession,
    stakeholder_id: str,
    caller: Caller,
    include_ended: bool,
    after_id: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A page of the stakeholder's customers with their value, and the totals over all of them."""

    await get_stakeholder(session=session, stakeholder_id=stakeholder_id, caller=caller)
    since = _active_since()
    rows = await repository.stakeholder_customers(
        session, stakeholder_id, include_ended=include_ended, active_since=since, after_id=after_id, limit=limit
    )
    totals = await repository.stakeholder_totals(
        session, stakeholder_id, include_ended=include_ended, active_since=since
    )
    items = [
        {
            **row,
            "current": row["ended_at"] is None,
            "revenue": _money(row["revenue"]),
            "purchases": int(row["purchases"]),
            "active": bool(row["active"]),
        }
        for row in rows
    ]
    return items, {
        "stakeholder_id": stakeholder_id,
        "customers": int(totals["customers"]),
        "active_customers": int(totals["active_customers"]),
        "revenue": _money(totals["revenue"]),
        "predicted_clv": _money(totals["predicted_clv"]),
    }


async def performance(
    *,
    session: AsyncSession,
    caller: Caller,
    kind: str | None,
    include_ended: bool,
    after: tuple[float, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Stakeholders ranked by their customers' revenue: how many customers, how many still
    buy, their revenue and predicted CLV. A partner's key sees only its own row."""

    rows = await repository.performance(
        session,
        kind=kind,
        only_id=caller.partner_id if caller.partner_only else None,
        include_ended=include_ended,
        active_since=_active_since(),
        after=after,
        limit=limit,
    )
    return [_performance_item(row) for row in rows]


def _performance_item(row: Any) -> dict[str, Any]:
    customers, active, revenue = int(row["customers"]), int(row["active_customers"]), _money(row["revenue"])
    return {
        **row,
        "customers": customers,
        "active_customers": active,
        "revenue": revenue,
        "revenue_per_customer": round(revenue / customers, 2) if customers else None,
        "predicted_clv": _money(row["predicted_clv"]),
        "retention": round(active / customers, 4) if customers else None,
    }
