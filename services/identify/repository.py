"""identify's queries: all SQL of the service lives here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Customer, Transaction


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


# Built once: the hot read path skips statement construction and the ORM.
_READ_CUSTOMER = select(Customer.__table__).where(Customer.__table__.c.id == bindparam("customer_id"))


async def read_customer(session: AsyncSession, customer_id: str):
    """One customer as a row mapping."""

    result = await session.execute(_READ_CUSTOMER, {"customer_id": customer_id})
    return result.mappings().first()


async def find_identity_clash(
    session: AsyncSession, *, email_key: str | None, external_id: str | None, exclude_id: str | None = None
) -> Customer | None:
    conditions = []
    if email_key:
        conditions.append(Customer.email_key == email_key)
    if external_id:
        conditions.append(Customer.external_id == external_id)
    if not conditions:
        return None
    query = select(Customer).where(or_(*conditions))
    if exclude_id:
        query = query.where(Customer.id != exclude_id)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def list_customers(session: AsyncSession, *, after_id: str | None, limit: int) -> list[Customer]:
    query = select(Customer).order_by(Customer.id).limit(limit)
    if after_id:
        query = query.where(Customer.id > after_id)
    return list((await session.execute(query)).scalars())


async def transaction_by_external_id(session: AsyncSession, external_id: str) -> Transaction | None:
    query = select(Transaction).where(Transaction.external_id == external_id)
    return (await session.execute(query)).scalar_one_or_none()


async def count_purchase(session: AsyncSession, customer_id: str) -> int:
    """Add one to the customer's purchase count atomically and return the new count."""

    result = await session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(purchase_count=Customer.purchase_count + 1)
        .returning(Customer.purchase_count)
    )
    return result.scalar_one()


async def list_transactions(
    session: AsyncSession, *, customer_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[Transaction]:
    query = (
        select(Transaction)
        .where(Transaction.customer_id == customer_id)
        .order_by(Transaction.occurred_at.desc(), Transaction.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(tuple_(Transaction.occurred_at, Transaction.id) < before)
    return list((await session.execute(query)).scalars())
