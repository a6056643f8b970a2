"""Templates' queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.templates.models import MessageTemplate


async def get(session: AsyncSession, template_id: str) -> MessageTemplate | None:
    return await session.get(MessageTemplate, template_id)


async def by_name(session: AsyncSession, name: str) -> MessageTemplate | None:
    return await session.scalar(select(MessageTemplate).where(MessageTemplate.name == name))


async def page(session: AsyncSession, *, after_id: str | None, limit: int) -> Sequence[MessageTemplate]:
    query = select(MessageTemplate).order_by(MessageTemplate.id).limit(limit)
    if after_id is not None:
        query = query.where(MessageTemplate.id > after_id)
    return (await session.execute(query)).scalars().all()


async def remove(session: AsyncSession, template_id: str) -> int:
    result = await session.execute(delete(MessageTemplate).where(MessageTemplate.id == template_id))
    return int(getattr(result, "rowcount", 0) or 0)
