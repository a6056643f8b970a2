"""Stakeholders', relations' and customer values' queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.stakeholders.models import Purchase, Relation, Stakeholder, profiles
from shared.db.bulk import one_of
from shared.db.database import dialect_name, insert_ignoring

_stakeholders = Stakeholder.__table__
_relations = Relation.__table__
_purchases = Purchase.__table__
_profiles = profiles.table

# --- stakeholders --------------------------------------------------------------------

_READ_STAKEHOLDER = select(_stakeholders).where(_stakeholders.c.id == bindparam("stakeholder_id"))


async def read_stakeholder(session: AsyncSession, stakeholder_id: str):
    """One stakeholder as a row mapping."""

    return (await session.execute(_READ_STAKEHOLDER, {"stakeholder_id": stakeholder_id})).mappings().first()


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_stakeholders(
    session: AsyncSession,
    *,
    kind: str | None,
    after_id: str | None,
    limit: int,
    only_id: str | None = None,
    name: str | None = None,
):
    """A page of stakeholders; with `only_id`, at most that one (a partner's own record);
    with `name`, those whose name contains it, whatever the case."""
    s = _stakeholders.c
    query = select(_stakeholders).order_by(s.id).limit(limit)
    if only_id is not None:
        query = query.where(s.id == only_id)
    if kind:
        query = query.where(s.kind == kind)
    if name:
        query = query.where(func.lower(s.name).like(f"%{_like_escaped(name.lower())}%", escape="\\"))
    if after_id:
        query = query.where(s.id > after_id)
    return list((await session.execute(query)).mappings())


async def update_stakeholder(session: AsyncSession, stakeholder_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(_stakeholders).where(_stakeholders.c.id == stakeholder_id).values(**values))


async def stakeholders_by_id(session: AsyncSession, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    query = select(_stakeholders).where(one_of(_stakeholders.c.id, dialect_name(session)))
    return {row["id"]: row for row in (await session.execute(query, {"ids": list(set(ids))})).mappings()}


# --- relations --------------------------------------------------------------------------


async def insert_relation(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_relations.insert(), [row])


async def read_relation(session: AsyncSession, relation_id: str):
    query = select(_relations).where(_relations.c.id == relation_id)
    return (await session.execute(query)).mappings().first()


async def current_relations(
    session: AsyncSession,
    customer_ids: Sequence[str],
    *,
    relation: str | None = None,
    stakeholder_id: str | None = None,
) -> list[Any]:
    """The customers' current relations (of one kind, or of one stakeholder), oldest start first."""

    r = _relations.c
    query = (
        select(_relations)
        .where(one_of(r.customer_id, dialect_name(session)), r.ended_at.is_(None))
        .order_by(r.started_at, r.id)
    )
    if relation is not None:
        query = query.where(r.relation == relation)
    if stakeholder_id is not None:
        query = query.where(r.stakeholder_id == stakeholder_id)
    return list((await session.execute(query, {"ids": list(customer_ids)})).mappings())


async def end_relations(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: {"key": relation id, "ended_at", "ended_by", "ended_reason"}."""

    if rows:
        await session.execute(
            update(_relations)
            .where(_relations.c.id == bindparam("key"), _relations.c.ended_at.is_(None))
            .values(
                ended_at=bindparam("ended_at"), ended_by=bindparam("ended_by"), ended_reason=bindparam("ended_reason")
            ),
            rows,
        )


async def relation_periods(
    session: AsyncSession,
    customer_id: str,
    *,
    limit: int,
    after_id: str | None = None,
    stakeholder_id: str | None = None,
    newest_first: bool = False,
) -> list[Any]:
    """A customer's relation periods: by id (creation order) for pages, or newest start first."""

    r = _relations.c
    query = select(_relations).where(r.customer_id == customer_id).limit(limit)
    if stakeholder_id is not None:
        query = query.where(r.stakeholder_id == stakeholder_id)
    if newest_first:
        query = query.order_by(r.started_at.desc(), r.id.desc())
    else:
        query = query.order_by(r.id)
        if after_id:
            query = query.where(r.id > after_id)
    return list((await session.execute(query)).mappings())


async def relations_at(
    session: AsyncSession, customer_id: str, at: datetime, *, stakeholder_id: str | None = None
) -> list[Any]:
    """The relations current at `at`: started by then and not ended by then."""

    r = _relations.c
    query = (
        select(_relations)
        .where(
            r.customer_id == customer_id,
            r.started_at <= at,
            or_(r.ended_at.is_(None), r.ended_at > at),
        )
        .order_by(r.started_at, r.id)
    )
    if stakeholder_id is not None:
        query = query.where(r.stakeholder_id == stakeholder_id)
    return list((await session.execute(query)).mappings())


async def relations_of_customers(session: AsyncSession, customer_ids: Sequence[str]) -> list[Any]:
    """Every period of these customers (a merge's group), oldest start first."""

    r = _relations.c
    query = select(_relations).where(one_of(r.customer_id, dialect_name(session))).order_by(r.started_at, r.id)
    return list((await session.execute(query, {"ids": list(customer_ids)})).mappings())


async def move_relations(session: AsyncSession, merged_ids: Sequence[str], survivor_id: str) -> None:
    await session.execute(
        update(_relations)
        .where(one_of(_relations.c.customer_id, dialect_name(session)))
        .values(customer_id=survivor_id),
        {"ids": list(merged_ids)},
    )


async def restart_relations(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: {"key": relation id, "started_at"}: a collapsed relation keeps the earliest start."""

    if rows:
        await session.execute(
            update(_relations).where(_relations.c.id == bindparam("key")).values(started_at=bindparam("started_at")),
            rows,
        )


async def delete_relations(session: AsyncSession, ids: Sequence[str]) -> None:
    if ids:
        await session.execute(delete(_relations).where(one_of(_relations.c.id, dialect_name(session))), {"ids": ids})


# --- purchases (identify's transactions, in the reporting currency) ------------------------


async def record_purchases(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New purchases; one announced again (a redelivery) is left as it is."""

    if rows:
        await session.execute(insert_ignoring(session, _purchases, ["transaction_id"]), rows)


async def refund_purchases(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: {"key": transaction id, "refund"}: the purchase's revenue goes down by it."""

    if rows:
        p = _purchases.c
        await session.execute(
            update(_purchases)
            .where(p.transaction_id == bindparam("key"))
            .values(refunded=p.refunded + bindparam("refund")),
            rows,
        )


async def void_purchases(session: AsyncSession, transaction_ids: Sequence[str]) -> None:
    if transaction_ids:
        await session.execute(
            update(_purchases).where(one_of(_purchases.c.transaction_id, dialect_name(session))).values(voided=True),
            {"ids": list(transaction_ids)},
        )


async def move_purchases(session: AsyncSession, merged_ids: Sequence[str], survivor_id: str) -> None:
    await session.execute(
        update(_purchases)
        .where(one_of(_purchases.c.customer_id, dialect_name(session)))
        .values(customer_id=survivor_id),
        {"ids": list(merged_ids)},
    )


# --- what a stakeholder's customers are worth ------------------------------------------------


def _customer_values(active_since: datetime, stakeholder_id: str | None = None):
    """Per customer: net revenue, purchases and the last one (voids out, refunds off), active or
    not; of one stakeholder's customers only (ever related), or of all."""

    p = _purchases.c
    kept = p.voided.is_(False)
    last = func.max(case((kept, p.occurred_at)))
    query = select(
        p.customer_id.label("customer_id"),
        func.sum(case((kept, p.amount - p.refunded), else_=0)).label("revenue"),
        func.sum(case((kept, 1), else_=0)).label("purchases"),
        last.label("last_purchase_at"),
        case((last >= active_since, 1), else_=0).label("active"),
    ).group_by(p.customer_id)
    if stakeholder_id is not None:
        theirs = select(_relations.c.customer_id).where(_relations.c.stakeholder_id == stakeholder_id)
        query = query.where(p.customer_id.in_(theirs))
    return query.subquery("customer_values")


def _links(stakeholder_id: str | None, include_ended: bool):
    """(stakeholder, customer) pairs, of one stakeholder or all: current relations, or every one ever."""

    r = _relations.c
    query = select(r.stakeholder_id, r.customer_id).distinct()
    if stakeholder_id is not None:
        query = query.where(r.stakeholder_id == stakeholder_id)
    if not include_ended:
        query = query.where(r.ended_at.is_(None))
    return query.subquery("links")


async def stakeholder_customers(
    session: AsyncSession,
    stakeholder_id: str,
    *,
    include_ended: bool,
    active_since: datetime,
    after_id: str | None,
    limit: int,
) -> list[Any]:
    """A page of the stakeholder's relation periods (current ones, or all), each with its
    customer's revenue, purchases, activity and scores, in relation id order."""

    r = _relations.c
    values = _customer_values(active_since, stakeholder_id)
    query = (
        select(
            r.id.label("relation_id"),
            r.customer_id,
            r.relation,
            r.started_at,
            r.ended_at,
            func.coalesce(values.c.revenue, 0).label("revenue"),
            func.coalesce(values.c.purchases, 0).label("purchases"),
            values.c.last_purchase_at,
            func.coalesce(values.c.active, 0).label("active"),
            _profiles.c.predicted_clv,
            _profiles.c.segment,
        )
        .select_from(
            _relations.outerjoin(values, values.c.customer_id == r.customer_id).outerjoin(
                _profiles, _profiles.c.customer_id == r.customer_id
            )
        )
        .where(r.stakeholder_id == stakeholder_id)
        .order_by(r.id)
        .limit(limit)
    )
    if not include_ended:
        query = query.where(r.ended_at.is_(None))
    if after_id:
        query = query.where(r.id > after_id)
    return list((await session.execute(query)).mappings())


def _performance(*, stakeholder_id: str | None, include_ended: bool, active_since: datetime):
    """Per stakeholder (or the one): customers, active ones, their revenue and predicted CLV (a subquery)."""

    links = _links(stakeholder_id, include_ended)
    values = _customer_values(active_since, stakeholder_id)
    return (
        select(
            links.c.stakeholder_id,
            func.count(links.c.customer_id).label("customers"),
            func.coalesce(func.sum(values.c.active), 0).label("active_customers"),
            func.coalesce(func.sum(values.c.revenue), 0).label("revenue"),
            func.coalesce(func.sum(_profiles.c.predicted_clv), 0).label("predicted_clv"),
        )
        .select_from(
            links.outerjoin(values, values.c.customer_id == links.c.customer_id).outerjoin(
                _profiles, _profiles.c.customer_id == links.c.customer_id
            )
        )
        .group_by(links.c.stakeholder_id)
        .subquery("performance")
    )


async def stakeholder_totals(
    session: AsyncSession, stakeholder_id: str, *, include_ended: bool, active_since: datetime
) -> dict[str, Any]:
    perf = _performance(stakeholder_id=stakeholder_id, include_ended=include_ended, active_since=active_since)
    row = (await session.execute(select(perf))).mappings().first()
    return dict(row) if row else {"customers": 0, "active_customers": 0, "revenue": 0, "predicted_clv": 0}


async def performance(
    session: AsyncSession,
    *,
    kind: str | None,
    only_id: str | None,
    include_ended: bool,
    active_since: datetime,
    after: tuple[float, str] | None,
    limit: int,
) -> list[Any]:
    """Stakeholders ranked by their customers' revenue (in cents, highest first), then id;
    a stakeholder without customers ranks with zeros."""

    s = _stakeholders.c
    perf = _performance(stakeholder_id=only_id, include_ended=include_ended, active_since=active_since)
    cents = cast(func.round(cast(func.coalesce(perf.c.revenue, 0), Float) * 100), Integer)
    ranked = (
        select(
            s.id.label("stakeholder_id"),
            s.kind,
            s.name,
            func.coalesce(perf.c.customers, 0).label("customers"),
            func.coalesce(perf.c.active_customers, 0).label("active_customers"),
            func.coalesce(perf.c.revenue, 0).label("revenue"),
            func.coalesce(perf.c.predicted_clv, 0).label("predicted_clv"),
            cents.label("rank"),
        )
        .select_from(_stakeholders.outerjoin(perf, perf.c.stakeholder_id == s.id))
        .subquery("ranked")
    )
    k = ranked.c
    query = select(ranked).order_by(k.rank.desc(), k.stakeholder_id).limit(limit)
    if kind:
        query = query.where(k.kind == kind)
    if only_id is not None:
        query = query.where(k.stakeholder_id == only_id)
    if after is not None:
        rank, after_id = after
        query = query.where(or_(k.rank < int(rank), and_(k.rank == int(rank), k.stakeholder_id > after_id)))
    return list((await session.execute(query)).mappings())
