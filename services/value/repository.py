"""value's queries."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import CursorResult, Select, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import Offer, SuppressedCustomer
from shared.db.bulk import one_of
from shared.db.database import dialect_name, insert_ignoring

_offers = Offer.__table__
_suppressed = SuppressedCustomer.__table__
_INSERT_OFFERS = _offers.insert()


@cache
def _with_automatic(dialect: str) -> Select[Any]:
    """Built once per dialect, as the next: read for every micro-batch of events (building a
    statement and its cache key cost more than running it)."""

    return select(_offers.c.customer_id).where(
        one_of(_offers.c.customer_id, dialect), _offers.c.automatic_kind == bindparam("kind")
    )


@cache
def _suppressed_of(dialect: str) -> Select[Any]:
    return select(_suppressed.c.customer_id).where(one_of(_suppressed.c.customer_id, dialect))


async def automatic_offers_of(session: AsyncSession, customer_ids: list[str]):
    query = select(_offers.c.id, _offers.c.customer_id, _offers.c.automatic_kind, _offers.c.issued_at).where(
        _offers.c.customer_id.in_(customer_ids), _offers.c.automatic_kind.is_not(None)
    )
    return list((await session.execute(query)).mappings())


async def demote_automatic(session: AsyncSession, offer_ids: list[str]) -> None:
    """These offers stay, but no longer count as the customer's automatic offer of their kind."""

    if offer_ids:
        await session.execute(update(_offers).where(_offers.c.id.in_(offer_ids)).values(automatic_kind=None))


async def move_offers(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    await session.execute(update(_offers).where(_offers.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))


async def insert_offers(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(_INSERT_OFFERS, rows)


async def customers_with_automatic(session: AsyncSession, customer_ids: set[str], kind: str) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.execute(_with_automatic(dialect_name(session)), {"ids": list(customer_ids), "kind": kind})
    return set(rows.scalars())


_READ_OFFER = select(_offers).where(_offers.c.id == bindparam("offer_id"))


async def read_offer(session: AsyncSession, offer_id: str):
    return (await session.execute(_READ_OFFER, {"offer_id": offer_id})).mappings().first()


async def mark_redeemed(session: AsyncSession, offer_id: str, at: datetime, transaction_id: str | None = None) -> bool:
    """Redeem only an offer still issued: two redemptions racing cannot both win."""

    # An UPDATE's result has a rowcount (a CursorResult); execute() is typed for any statement.
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            update(_offers)
            .where(_offers.c.id == offer_id, _offers.c.status == "issued")
            .values(status="redeemed", redeemed_at=at, redeemed_transaction_id=transaction_id)
        ),
    )
    return result.rowcount == 1


async def list_offers(
    session: AsyncSession,
    *,
    customer_id: str | None,
    before_id: str | None,
    limit: int,
    kind: str | None = None,
    status: str | None = None,
    now: datetime | None = None,
):
    """Newest first (ids are time-ordered); `status` as the API shows it: an issued offer
    past its expiry (at `now`) is `expired`."""
    query = select(_offers).order_by(_offers.c.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(_offers.c.customer_id == customer_id)
    if kind is not None:
        query = query.where(_offers.c.kind == kind)
    if status == "redeemed":
        query = query.where(_offers.c.status == "redeemed")
    elif status == "expired":
        query = query.where(_offers.c.status == "issued", _offers.c.expires_at <= now)
    elif status == "issued":
        query = query.where(
            _offers.c.status == "issued", or_(_offers.c.expires_at.is_(None), _offers.c.expires_at > now)
        )
    if before_id:
        query = query.where(_offers.c.id < before_id)
    return (await session.execute(query)).mappings().all()


async def add_suppressed(session: AsyncSession, customer_ids: list[str], since: datetime) -> int:
    rows = [{"customer_id": cid, "since": since} for cid in customer_ids]
    if not rows:
        return 0
    result = await session.execute(insert_ignoring(session, _suppressed, ["customer_id"]), rows)
    return int(cast(CursorResult, result).rowcount or 0)


async def suppressed_among(session: AsyncSession, customer_ids: set[str]) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.execute(_suppressed_of(dialect_name(session)), {"ids": list(customer_ids)})
    return set(rows.scalars())
