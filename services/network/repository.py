"""network's queries: all SQL of the service lives here."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.models import Stakeholder

_stakeholders = Stakeholder.__table__


# --- stakeholders --------------------------------------------------------------------

_READ_STAKEHOLDER = select(_stakeholders).where(_stakeholders.c.id == bindparam("stakeholder_id"))


async def read_stakeholder(session: AsyncSession, stakeholder_id: str):
    """One stakeholder as a row mapping."""

    return (await session.execute(_READ_STAKEHOLDER, {"stakeholder_id": stakeholder_id})).mappings().first()


async def list_stakeholders(
    session: AsyncSession, *, kind: str | None, after_id: str | None, limit: int, only_id: str | None = None
):
    """A page of stakeholders; with `only_id`, at most that one (a partner's own record)."""
    query = select(_stakeholders).order_by(_stakeholders.c.id).limit(limit)
    if only_id is not None:
        query = query.where(_stakeholders.c.id == only_id)
    if kind:
        query = query.where(_stakeholders.c.kind == kind)
    if after_id:
        query = query.where(_stakeholders.c.id > after_id)
    return list((await session.execute(query)).mappings())
