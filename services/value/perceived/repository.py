"""The value map's queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import known_customers, profiles
from services.value.perceived.models import Competitor, ValueAttribute, ValueRating

_attributes = ValueAttribute.__table__
_competitors = Competitor.__table__
_ratings = ValueRating.__table__


# --- attributes and competitors ----------------------------------------------------------


async def all_attributes(session: AsyncSession) -> list[Any]:
    return list((await session.execute(select(_attributes).order_by(_attributes.c.id))).mappings())


async def all_competitors(session: AsyncSession) -> list[Any]:
    return list((await session.execute(select(_competitors).order_by(_competitors.c.id))).mappings())


async def attributes_page(session: AsyncSession, *, after_id: str | None, limit: int) -> list[Any]:
    return await _page(session, _attributes, after_id, limit)


async def competitors_page(session: AsyncSession, *, after_id: str | None, limit: int) -> list[Any]:
    return await _page(session, _competitors, after_id, limit)


async def _page(session: AsyncSession, table: Any, after_id: str | None, limit: int) -> list[Any]:
    query = select(table).order_by(table.c.id).limit(limit)
    if after_id is not None:
        query = query.where(table.c.id > after_id)
    return list((await session.execute(query)).mappings())


async def attribute(session: AsyncSession, attribute_id: str):
    return (await session.execute(select(_attributes).where(_attributes.c.id == attribute_id))).mappings().first()


async def competitor(session: AsyncSession, competitor_id: str):
    return (await session.execute(select(_competitors).where(_competitors.c.id == competitor_id))).mappings().first()


async def attribute_by_key(session: AsyncSession, key: str):
    return (await session.execute(select(_attributes).where(_attributes.c.key == key))).mappings().first()


async def competitor_by_key(session: AsyncSession, key: str):
    return (await session.execute(select(_competitors).where(_competitors.c.key == key))).mappings().first()


async def price_attribute(session: AsyncSession):
    return (await session.execute(select(_attributes).where(_attributes.c.price.is_(True)))).mappings().first()


async def insert_attribute(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_attributes.insert(), [row])


async def insert_competitor(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_competitors.insert(), [row])


async def update_attribute(session: AsyncSession, attribute_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(_attributes).where(_attributes.c.id == attribute_id).values(**values))


async def update_competitor(session: AsyncSession, competitor_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(_competitors).where(_competitors.c.id == competitor_id).values(**values))


async def delete_attribute(session: AsyncSession, attribute_id: str) -> None:
    await session.execute(delete(_attributes).where(_attributes.c.id == attribute_id))


async def delete_competitor(session: AsyncSession, competitor_id: str) -> None:
    await session.execute(delete(_competitors).where(_competitors.c.id == competitor_id))


# --- ratings -----------------------------------------------------------------------------


async def insert_ratings(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ratings.insert(), rows)


async def rekey_attribute(session: AsyncSession, old: str, new: str) -> None:
    """A renamed attribute keeps its ratings."""

    await session.execute(update(_ratings).where(_ratings.c.attribute_key == old).values(attribute_key=new))


async def rekey_subject(session: AsyncSession, old: str, new: str) -> None:
    """A renamed competitor keeps its ratings."""

    await session.execute(update(_ratings).where(_ratings.c.subject_key == old).values(subject_key=new))


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
    """How many ratings of each (attribute, subject, month, score) in the window and segment:
    one pass over the ratings, a few thousand groups at most (scores are 1-10)."""

    query = select(
        _ratings.c.attribute_key, _ratings.c.subject_key, _ratings.c.month, _ratings.c.score, func.count().label("n")
    ).group_by(_ratings.c.attribute_key, _ratings.c.subject_key, _ratings.c.month, _ratings.c.score)
    if since is not None:
        query = query.where(_ratings.c.rated_at >= since)
    if until is not None:
        query = query.where(_ratings.c.rated_at < until)
    if segment is not None:
        query = query.where(_ratings.c.segment == segment)
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
