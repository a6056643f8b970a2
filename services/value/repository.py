"""value's queries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import Offer

_offers = Offer.__table__






async def insert_offers(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(_offers.insert(), rows)


async def customers_with_automatic(session: AsyncSession, customer_ids: set[str], kind: str) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.execute(
        select(_offers.c.customer_id).where(_offers.c.customer_id.in_(customer_ids), _offers.c.automatic_kind == kind)
    )
    return set(rows.scalars())


_READ_OFFER = select(_offers).where(_offers.c.id == bindparam("offer_id"))


async def read_offer(session: AsyncSession, offer_id: str):
    return (await session.execute(_READ_OFFER, {"offer_id": offer_id})).mappings().first()


async def mark_redeemed(session: AsyncSession, offer_id: str, at: datetime) -> bool:
    """Redeem only an offer still issued: two redemptions racing cannot both win."""

    result = await session.execute(
        update(_offers).where(_offers.c.id == offer_id, _offers.c.status == "issued").values(status="redeemed", redeemed_at=at)
    )
    return result.rowcount == 1


async def list_offers(session: AsyncSession, *, customer_id: str, before_id: str | None, limit: int):
    query = select(_offers).where(_offers.c.customer_id == customer_id).order_by(_offers.c.id.desc()).limit(limit)
    if before_id:
        query = query.where(_offers.c.id < before_id)
    return (await session.execute(query)).mappings().all()
