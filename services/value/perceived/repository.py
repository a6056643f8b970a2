"""The value map's queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import known_customers, profiles
from services.value.perceived.models import Competitor, ValueAttribute, ValueRating

_attributes = ValueAttribute.__table__
_ratings = ValueRating.__table__


def month_of(at: datetime) -> str:
    """A rating's `month` column: `YYYY-MM` of the time in UTC."""

    return at.astimezone(UTC).strftime("%Y-%m")


class NamedList:
    """A list value keeps of named things, attributes or competitors: the same queries for
    both; `rating_key` is the ratings' column that names one of them, `noun` what one is."""

    def __init__(self, table: Table, rating_key: str, noun: str):
        self.table = table
        self.rating_key = _ratings.c[rating_key]
        self.noun = noun

    async def all(self, session: AsyncSession) -> list[Any]:
        return list((await session.execute(select(self.table).order_by(self.table.c.id))).mappings())

    async def page(self, session: AsyncSession, *, after_id: str | None, limit: int) -> list[Any]:
        query = select(self.table).order_by(self.table.c.id).limit(limit)
        if after_id is not None:
            query = query.where(self.table.c.id > after_id)
        return list((await session.execute(query)).mappings())

    async def get(self, session: AsyncSession, row_id: str):
        return (await session.execute(select(self.table).where(self.table.c.id == row_id))).mappings().first()

    async def by_key(self, session: AsyncSession, key: str):
        return (await session.execute(select(self.table).where(self.table.c.key == key))).mappings().first()

    async def insert(self, session: AsyncSession, row: dict[str, Any]) -> None:
        await session.execute(self.table.insert(), [row])

    async def update(self, session: AsyncSession, row_id: str, values: dict[str, Any]) -> None:
        await session.execute(update(self.table).where(self.table.c.id == row_id).values(**values))

    async def delete(self, session: AsyncSession, row_id: str) -> None:
        await session.execute(delete(self.table).where(self.table.c.id == row_id))

    async def rekey_ratings(self, session: AsyncSession, old: str, new: str) -> None:
        """A renamed attribute or competitor keeps its ratings."""

        await session.execute(update(_ratings).where(self.rating_key == old).values({self.rating_key: new}))


ATTRIBUTES = NamedList(_attributes, "attribute_key", "attribute")
COMPETITORS = NamedList(Competitor.__table__, "subject_key", "competitor")


async def price_attribute(session: AsyncSession):
    return (await session.execute(select(_attributes).where(_attributes.c.price.is_(True)))).mappings().first()


# --- ratings -----------------------------------------------------------------------------


async def insert_ratings(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ratings.insert(), rows)


async def move_ratings(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    await session.execute(
        update(_ratings).where(_ratings.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )


async def ratings_of(session: AsyncSession, customer_id: str, *, before_id: str | None, limit: int) -> list[Any]:
    query = select(_ratings).where(_ratings.c.customer_id == customer_id).order_by(_ratings.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(_ratings.c.id < before_id)
    return list((await session.execute(query)).mappings())


async def rating_groups(
    session: AsyncSession, *, since: datetime | None, until: datetime | None, segment: str | None
) -> list[Any]:
    """How many ratings of each (month, attribute, subject, score) in the window [since,
    until) and segment: a few thousand groups at most (scores are 1-10), read from the
    index `ix_value_ratings_map` alone, the window as a range of its leading `month`."""

    r = _ratings.c
    query = select(r.attribute_key, r.subject_key, r.month, r.score, func.count().label("n")).group_by(
        r.month, r.attribute_key, r.subject_key, r.score
    )
    if since is not None:
        query = query.where(r.month >= month_of(since), r.rated_at >= since)
    if until is not None:
        query = query.where(r.month <= month_of(until - timedelta(microseconds=1)), r.rated_at < until)
    if segment is not None:
        query = query.where(r.segment == segment)
    return list((await session.execute(query)).mappings())


# --- customers (value's read models) ----------------------------------------------------


async def known_among(session: AsyncSession, customer_ids: set[str]) -> set[str]:
    table = known_customers.table
    rows = await session.execute(select(table.c.id).where(table.c.id.in_(sorted(customer_ids))))
    return set(rows.scalars())


async def segments_of(session: AsyncSession, customer_ids: set[str]) -> dict[str, str | None]:
    table = profiles.table
    rows = await session.execute(
        select(table.c.customer_id, table.c.segment).where(table.c.customer_id.in_(sorted(customer_ids)))
    )
    return {customer_id: segment for customer_id, segment in rows}  # noqa: C416 - dict(rows) takes a Result for a mapping
