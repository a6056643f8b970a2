"""Retention analytics' queries: the purchase months, and the stage history they are read with."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Delete, Row, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.analytics.models import PurchaseMonth
from services.lifecycle.models import StageTransition
from shared.db.bulk import bulk_insert, one_of
from shared.db.database import dialect_name

_months = PurchaseMonth.__table__
_transitions = StageTransition.__table__
COLUMNS = ("customer_id", "month", "cohort", "purchases", "first_at")


@cache
def _months_of(dialect: str) -> Select[Any]:
    """Built once per dialect, as the next: every micro-batch of purchases reads and rewrites
    its customers' months (building a statement and its cache key cost more than running it)."""

    return select(_months).where(one_of(_months.c.customer_id, dialect))


@cache
def _delete_months_of(dialect: str) -> Delete:
    return delete(_months).where(one_of(_months.c.customer_id, dialect))


async def months_of(session: AsyncSession, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not customer_ids:
        return []
    query = _months_of(dialect_name(session))
    return [dict(row) for row in (await session.execute(query, {"ids": list(customer_ids)})).mappings()]


async def replace_months(session: AsyncSession, customer_ids: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """The customers' months become `rows`: a customer has a handful, so rewriting them is two statements."""

    if not customer_ids:
        return
    await session.execute(_delete_months_of(dialect_name(session)), {"ids": list(customer_ids)})
    await bulk_insert(session, _months, COLUMNS, [tuple(row[c] for c in COLUMNS) for row in rows])


async def cohort_counts(session: AsyncSession, *, first: int | None, last: int | None) -> Sequence[Row[Any, Any, Any]]:
    """(cohort, month, customers) for the cohorts from `first` to `last` (months, both included)."""

    query = select(_months.c.cohort, _months.c.month, func.count().label("customers")).group_by(
        _months.c.cohort, _months.c.month
    )
    if first is not None:
        query = query.where(_months.c.cohort >= first)
    if last is not None:
        query = query.where(_months.c.cohort <= last)
    return (await session.execute(query.order_by(_months.c.cohort, _months.c.month))).all()


async def first_purchases(session: AsyncSession, *, until: datetime) -> Sequence[Row[Any, Any]]:
    """(customer_id, first_at) of every customer whose first purchase was at or before `until`."""

    query = select(_months.c.customer_id, _months.c.first_at).where(
        _months.c.month == _months.c.cohort, _months.c.first_at <= until
    )
    return (await session.execute(query)).all()


async def entries_into(session: AsyncSession, stage: str, *, until: datetime) -> Sequence[Row[Any, Any]]:
    """(customer_id, at) of every transition into `stage` at or before `until`, oldest first."""

    query = (
        select(_transitions.c.customer_id, _transitions.c.at)
        .where(_transitions.c.to_stage == stage, _transitions.c.at <= until)
        .order_by(_transitions.c.at, _transitions.c.seq)
    )
    return (await session.execute(query)).all()


async def transitions_between(
    session: AsyncSession, *, start: datetime | None, end: datetime
) -> Sequence[Row[Any, Any, Any, Any]]:
    """(customer_id, from_stage, to_stage, at) of the transitions at or after `start` and before
    `end`, each customer's in time order."""

    t = _transitions
    query = select(t.c.customer_id, t.c.from_stage, t.c.to_stage, t.c.at).where(t.c.at < end)
    if start is not None:
        query = query.where(t.c.at >= start)
    return (await session.execute(query.order_by(t.c.customer_id, t.c.at, t.c.seq))).all()


async def stages_at(session: AsyncSession, end: datetime) -> dict[str, int]:
    """{stage: customers in it} at `end`: each customer's latest transition before it."""

    t = _transitions
    latest = func.row_number().over(partition_by=t.c.customer_id, order_by=(t.c.at.desc(), t.c.seq.desc()))
    ranked = select(t.c.to_stage, latest.label("n")).where(t.c.at < end).subquery()
    query = (
        select(ranked.c.to_stage, func.count().label("customers")).where(ranked.c.n == 1).group_by(ranked.c.to_stage)
    )
    return {row.to_stage: row.customers for row in await session.execute(query)}
