"""Queries of the money domain: exchange rates, refunds and voids."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import (
    Customer,
    CustomerKind,
    CustomerScore,
    FxRate,
    PurchaseSummary,
    Refund,
    Transaction,
)
from shared.db import dialect_insert, dialect_name

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
        query = query.where(
            (FxRate.currency > after[0]) | ((FxRate.currency == after[0]) & (FxRate.day < after[1]))
        )
    return list((await session.execute(query)).scalars())


async def lock_transaction(session: AsyncSession, transaction_id: str) -> Transaction | None:
    """The transaction, row-locked on PostgreSQL so two refunds cannot both take what is left."""

    query = select(Transaction).where(Transaction.id == transaction_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def refund_by_external_id(session: AsyncSession, external_id: str) -> Refund | None:
    return (await session.execute(select(Refund).where(Refund.external_id == external_id))).scalar_one_or_none()


async def add_refund(session: AsyncSession, refund: Refund) -> None:
    session.add(refund)
    await session.flush()


async def remove_purchase(session: AsyncSession, customer_id: str) -> int:
    """One purchase fewer on the customer (a void); returns the new count."""

    await session.execute(
        update(Customer).where(Customer.id == customer_id).values(purchase_count=Customer.purchase_count - 1)
    )
    return (await session.execute(select(Customer.purchase_count).where(Customer.id == customer_id))).scalar_one()


async def has_summary(session: AsyncSession, customer_id: str) -> bool:
    return await session.get(PurchaseSummary, customer_id) is not None


async def drop_scores(session: AsyncSession, customer_id: str) -> None:
    for table in (CustomerScore, CustomerKind):
        await session.execute(delete(table).where(table.customer_id == customer_id))


async def list_refunds(
    session: AsyncSession, *, transaction_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Refund]:
    """A purchase's refunds, oldest first."""

    query = (
        select(Refund)
        .where(Refund.transaction_id == transaction_id)
        .order_by(Refund.occurred_at, Refund.id)
        .limit(limit)
    )
    if after:
        query = query.where(tuple_(Refund.occurred_at, Refund.id) > after)
    return list((await session.execute(query)).scalars())
