"""Queries of erasures: the erasure, its reports, the suppression list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Customer, Erasure, ErasureReport, ImportRejection, Suppression
from shared.db.database import InlineSession, insert_ignoring


async def lock_customer(session: AsyncSession, customer_id: str) -> None:
    """FOR UPDATE on PostgreSQL; SQLAlchemy leaves it out on SQLite, whose writes are serial."""
    await session.execute(select(Customer.id).where(Customer.id == customer_id).with_for_update())


async def erasure_of_customer(session: AsyncSession, customer_id: str) -> Erasure | None:
    return (await session.execute(select(Erasure).where(Erasure.customer_id == customer_id))).scalar_one_or_none()


async def get_erasure(session: AsyncSession, erasure_id: str) -> Erasure | None:
    return (await session.execute(select(Erasure).where(Erasure.id == erasure_id))).scalar_one_or_none()


async def reports(session: AsyncSession, erasure_id: str) -> list[ErasureReport]:
    query = select(ErasureReport).where(ErasureReport.erasure_id == erasure_id)
    return list((await session.execute(query)).scalars())


async def add_report(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert_ignoring(session, ErasureReport.__table__, ["erasure_id", "service"]), [row])


async def merged_into(session: AsyncSession, survivor_id: str) -> list[str]:
    """Every customer merged into the survivor, directly or through another merged customer."""

    found: list[str] = []
    frontier = [survivor_id]
    while frontier:
        rows = await session.execute(select(Customer.id).where(Customer.merged_into.in_(frontier)))
        frontier = [cid for cid in rows.scalars() if cid not in found]
        found.extend(frontier)
    return found


async def match_keys(session: AsyncSession, ids: list[str]) -> list[tuple[str | None, str | None]]:
    rows = await session.execute(select(Customer.email_match_key, Customer.phone_key).where(Customer.id.in_(ids)))
    return [(email, phone) for email, phone in rows.all()]


async def identities(session: AsyncSession, ids: list[str]) -> list[str]:
    """The customers' emails, phones and external ids as stored (what an import's line would hold)."""

    rows = await session.execute(
        select(Customer.email, Customer.phone, Customer.external_id).where(Customer.id.in_(ids))
    )
    return sorted({value for row in rows.all() for value in row if value})


async def delete_rejections_naming(session: AsyncSession, values: list[str]) -> int:
    """Delete the rejected import lines that quote any of `values`: a rejection is tied to no
    customer id, only its raw line says whom it was about."""

    if not values:
        return 0
    rejections = ImportRejection.__table__
    condition = or_(*(rejections.c.raw.contains(value, autoescape=True) for value in values))
    result = await session.execute(delete(rejections).where(condition))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def add_suppressions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert_ignoring(session, Suppression.__table__, ["digest"]), rows)


async def mark_erased(session: AsyncSession, ids: list[str], at: datetime) -> int:
    result = await session.execute(
        update(Customer).where(Customer.id.in_(ids)).values(erased_at=at, suppressed=True, updated_at=at)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def waiting_for_stream(session: AsyncSession | InlineSession, services: int) -> list[Erasure]:
    """Erasures every service reported on, whose stream is not erased yet."""

    reported = select(ErasureReport.erasure_id).group_by(ErasureReport.erasure_id).having(func.count() >= services)
    query = select(Erasure).where(Erasure.completed_at.is_(None), Erasure.id.in_(reported))
    return list((await session.execute(query)).scalars())


async def complete(session: AsyncSession, erasure_id: str, *, messages: int, at: datetime) -> None:
    await session.execute(
        update(Erasure)
        .where(Erasure.id == erasure_id)
        .values(stream_erased_at=at, stream_messages=messages, completed_at=at)
    )


async def exists(session: AsyncSession, customer_id: str) -> bool:
    return (await session.execute(select(Customer.id).where(Customer.id == customer_id))).first() is not None
