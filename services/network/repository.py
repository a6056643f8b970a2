"""network's queries: all SQL of the service lives here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.models import KnownCustomer, Referral, Stakeholder
from shared.db import insert_ignoring

_stakeholders = Stakeholder.__table__
_known = KnownCustomer.__table__
_referrals = Referral.__table__



# --- stakeholders --------------------------------------------------------------------

_READ_STAKEHOLDER = select(_stakeholders).where(_stakeholders.c.id == bindparam("stakeholder_id"))


async def read_stakeholder(session: AsyncSession, stakeholder_id: str):
    """One stakeholder as a row mapping."""

    return (await session.execute(_READ_STAKEHOLDER, {"stakeholder_id": stakeholder_id})).mappings().first()


async def list_stakeholders(session: AsyncSession, *, kind: str | None, after_id: str | None, limit: int):
    query = select(_stakeholders).order_by(_stakeholders.c.id).limit(limit)
    if kind:
        query = query.where(_stakeholders.c.kind == kind)
    if after_id:
        query = query.where(_stakeholders.c.id > after_id)
    return list((await session.execute(query)).mappings())


# --- customers and referrals -------------------------------------------------------------


async def add_known_customers(session: AsyncSession, rows: list[dict]) -> None:
    """One statement for a batch of customers; one already known is left as it is."""

    if rows:
        await session.execute(insert_ignoring(session, _known, ["id"]), rows)


_IS_KNOWN = select(exists().where(_known.c.id == bindparam("customer_id")))


async def is_known(session: AsyncSession, customer_id: str) -> bool:
    return bool((await session.execute(_IS_KNOWN, {"customer_id": customer_id})).scalar())


_REFERRAL_OF = select(_referrals).where(_referrals.c.referred_id == bindparam("referred_id"))


async def referral_of(session: AsyncSession, referred_id: str):
    """The referral that brought `referred_id` in, if any."""

    return (await session.execute(_REFERRAL_OF, {"referred_id": referred_id})).mappings().first()


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
