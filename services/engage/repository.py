"""engage's queries: all SQL of the service lives here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.models import Interaction, TimelineEntry
from shared.db.database import insert_ignoring

_interactions = Interaction.__table__
_timeline = TimelineEntry.__table__


# --- interactions ------------------------------------------------------------------

_READ_INTERACTION = select(_interactions).where(_interactions.c.id == bindparam("interaction_id"))


async def read_interaction(session: AsyncSession, interaction_id: str):
    """One interaction as a row mapping."""

    return (await session.execute(_READ_INTERACTION, {"interaction_id": interaction_id})).mappings().first()


async def list_interactions(
    session: AsyncSession, *, customer_id: str, before: tuple[datetime, str] | None, limit: int
):
    query = (
        select(_interactions)
        .where(_interactions.c.customer_id == customer_id)
        .order_by(_interactions.c.occurred_at.desc(), _interactions.c.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(tuple_(_interactions.c.occurred_at, _interactions.c.id) < before)
    return list((await session.execute(query)).mappings())


# --- the timeline ----------------------------------------------------------------


async def add_timeline_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """One statement for all entries of a batch of events; an entry already there is left as it is."""

    if rows:
        await session.execute(insert_ignoring(session, _timeline, ["customer_id", "event_id"]), rows)


async def timeline_page(session: AsyncSession, *, customer_id: str, before: tuple[datetime, str] | None, limit: int):
    """A customer's timeline entries, newest first, strictly before `before` = (time, event_id)."""

    query = (
        select(_timeline.c.type, _timeline.c.time, _timeline.c.summary, _timeline.c.event_id)
        .where(_timeline.c.customer_id == customer_id)
        .order_by(_timeline.c.time.desc(), _timeline.c.event_id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(tuple_(_timeline.c.time, _timeline.c.event_id) < before)
    return list((await session.execute(query)).mappings())


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    """Interactions and timeline entries of merged customers become the survivor's.

    A timeline entry the survivor already has (a referral between the two) is kept once.
    """

    await session.execute(
        update(_interactions).where(_interactions.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )
    rows = (await session.execute(select(_timeline).where(_timeline.c.customer_id.in_(merged_ids)))).mappings().all()
    await add_timeline_entries(session, [{**row, "customer_id": survivor_id} for row in rows])
    await session.execute(delete(_timeline).where(_timeline.c.customer_id.in_(merged_ids)))


_HAS_TIMELINE = select(exists().where(_timeline.c.customer_id == bindparam("customer_id")))


async def has_timeline(session: AsyncSession, customer_id: str) -> bool:
    return bool((await session.execute(_HAS_TIMELINE, {"customer_id": customer_id})).scalar())
