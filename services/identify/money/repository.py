"""Queries of the money domain: exchange rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import (
    FxRate,
)
from shared.db.database import dialect_insert, dialect_name

_rates = FxRate.__table__


async def rates_of(session: AsyncSession, currencies: list[str]) -> list[tuple[str, date, Decimal]]:
    """(currency, day, rate) of these currencies, each currency's days ascending."""

    if not currencies:
        return []
    query = (
        select(_rates.c.currency, _rates.c.day, _rates.c.rate)
        .where(_rates.c.currency.in_(currencies))
        .order_by(_rates.c.currency, _rates.c.day)
    )
    return [tuple(row) for row in await session.execute(query)]


async def put_rates(session: AsyncSession, rows: list[dict]) -> None:
    """Insert or replace (currency, day) rates."""

    statement = dialect_insert(_rates, dialect_name(session))
    statement = statement.on_conflict_do_update(
        index_elements=["currency", "day"],
        set_={"rate": statement.excluded.rate, "updated_at": statement.excluded.updated_at},
    )
    await session.execute(statement, rows)


async def list_rates(
    session: AsyncSession, *, currency: str | None, after: tuple[str, date] | None, limit: int
) -> list[FxRate]:
    query = select(FxRate).order_by(FxRate.currency, FxRate.day.desc()).limit(limit)
    if currency:
        query = query.where(FxRate.currency == currency)
    if after:
        # currency ascending, then day descending
        query = query.where((FxRate.currency > after[0]) | ((FxRate.currency == after[0]) & (FxRate.day < after[1])))
    return list((await session.execute(query)).scalars())
