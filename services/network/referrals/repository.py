"""The referral programme's queries."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.referrals.models import Referral, ReferralProgramme
from shared.db.bulk import one_of
from shared.db.database import dialect_name

_referrals = Referral.__table__
_programme = ReferralProgramme.__table__

LIVE = ("pending", "qualified", "rewarded")


async def add_referral(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert(_referrals), [row])


_LIVE_REFERRAL_OF = select(_referrals).where(
    _referrals.c.referred_id == bindparam("referred_id"), _referrals.c.status.in_(LIVE)
)


async def live_referral_of(session: AsyncSession, referred_id: str):
    """The standing referral that brought `referred_id` in, if any."""

    return (await session.execute(_LIVE_REFERRAL_OF, {"referred_id": referred_id})).mappings().first()


async def pending_of(session: AsyncSession, referred_ids: list[str]) -> dict[str, dict[str, Any]]:
    """{referred customer: its pending referral} of the customers named."""

    if not referred_ids:
        return {}
    rows = await session.execute(_pending_of(dialect_name(session)), {"ids": referred_ids})
    return {row["referred_id"]: dict(row) for row in rows.mappings()}


@cache
def _pending_of(dialect: str) -> Select[Any]:
    """Built once per dialect: read for every micro-batch of purchases."""

    return select(_referrals).where(one_of(_referrals.c.referred_id, dialect), _referrals.c.status == "pending")


async def referrals_touching(session: AsyncSession, customer_ids: list[str]):
    """Referrals where one of the customers is the referrer or the referred."""

    query = select(_referrals).where(
        or_(_referrals.c.referrer_id.in_(customer_ids), _referrals.c.referred_id.in_(customer_ids))
    )
    return list((await session.execute(query)).mappings())


_CHANGE = update(_referrals).where(_referrals.c.id == bindparam("key"))


async def change(session: AsyncSession, referral_id: str, **values: Any) -> None:
    await session.execute(_CHANGE.values(**values), {"key": referral_id})


_REPOINT = _CHANGE.values(referrer_id=bindparam("referrer_id"), referred_id=bindparam("referred_id"))


async def repoint(session: AsyncSession, rows: list[dict]) -> None:
    """`rows`: {"key": referral id, "referrer_id", "referred_id"}."""

    if rows:
        await session.execute(_REPOINT, rows)


_VOID = _CHANGE.values(
    status="void",
    referrer_id=bindparam("referrer_id"),
    void_reason=bindparam("void_reason"),
    voided_at=bindparam("voided_at"),
)


async def void(session: AsyncSession, rows: list[dict]) -> None:
    """`rows`: {"key", "referrer_id", "void_reason", "voided_at"}: the referred id stays as it was."""

    if rows:
        await session.execute(_VOID, rows)


async def delete_referrals(session: AsyncSession, referral_ids: list[str]) -> None:
    if referral_ids:
        await session.execute(delete(_referrals).where(_referrals.c.id.in_(referral_ids)))


async def list_referrals(
    session: AsyncSession,
    *,
    after_id: str | None,
    limit: int,
    referrer_id: str | None = None,
    referred_id: str | None = None,
    status: str | None = None,
):
    query = select(_referrals).order_by(_referrals.c.id).limit(limit)
    if referrer_id is not None:
        query = query.where(_referrals.c.referrer_id == referrer_id)
    if referred_id is not None:
        query = query.where(_referrals.c.referred_id == referred_id)
    if status is not None:
        query = query.where(_referrals.c.status == status)
    if after_id:
        query = query.where(_referrals.c.id > after_id)
    return list((await session.execute(query)).mappings())


async def read_referral(session: AsyncSession, referral_id: str):
    return (await session.execute(select(_referrals).where(_referrals.c.id == referral_id))).mappings().first()


# --- the programme ---------------------------------------------------------------------


async def read_programme(session: AsyncSession):
    return (await session.execute(select(_programme).where(_programme.c.id == 1))).mappings().first()


async def save_programme(session: AsyncSession, row: dict[str, Any]) -> None:
    if (await session.execute(update(_programme).where(_programme.c.id == 1).values(**row))).rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(insert(_programme), [{"id": 1, **row}])
