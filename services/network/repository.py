"""network's queries: all SQL of the service lives here."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.models import Referral

_referrals = Referral.__table__


# --- customers and referrals -------------------------------------------------------------


_REFERRAL_OF = select(_referrals).where(_referrals.c.referred_id == bindparam("referred_id"))


async def referral_of(session: AsyncSession, referred_id: str):
    """The referral that brought `referred_id` in, if any."""

    return (await session.execute(_REFERRAL_OF, {"referred_id": referred_id})).mappings().first()


async def referrals_touching(session: AsyncSession, customer_ids: list[str]):
    """Referrals where one of the customers is the referrer or the referred."""

    query = select(_referrals).where(
        or_(_referrals.c.referrer_id.in_(customer_ids), _referrals.c.referred_id.in_(customer_ids))
    )
    return list((await session.execute(query)).mappings())


async def delete_referrals(session: AsyncSession, referral_ids: list[str]) -> None:
    if referral_ids:
        await session.execute(delete(_referrals).where(_referrals.c.id.in_(referral_ids)))


_REPOINT = (
    update(_referrals)
    .where(_referrals.c.id == bindparam("key"))
    .values(referrer_id=bindparam("referrer_id"), referred_id=bindparam("referred_id"))
)


async def repoint_referrals(session: AsyncSession, rows: list[dict]) -> None:
    """`rows`: {"key": referral id, "referrer_id", "referred_id"}."""

    if rows:
        await session.execute(_REPOINT, rows)


async def list_referrals(session: AsyncSession, *, referrer_id: str, after_id: str | None, limit: int):
    query = (
        select(_referrals.c.id, _referrals.c.referred_id, _referrals.c.recorded_at)
        .where(_referrals.c.referrer_id == referrer_id)
        .order_by(_referrals.c.id)
        .limit(limit)
    )
    if after_id:
        query = query.where(_referrals.c.id > after_id)
    return list((await session.execute(query)).mappings())
