"""Queries of the transactions domain: purchases, their refunds and voids, and the
purchase counts they keep on their customers."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from operator import itemgetter

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Customer, CustomerKind, CustomerScore, PurchaseSummary, Refund, Transaction
from shared.db.bulk import bulk_execute, bulk_insert, fetch_all, key_chunks, one_of, stage, stages
from shared.db.database import dialect_name


async def list_transactions(
    session: AsyncSession,
    *,
    customer_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Transaction]:
    """Newest first (occurred_at, id descending): one customer's on (customer_id, occurred_at,
    id), everyone's on (occurred_at, id); `since` inclusive, `until` exclusive."""
    query = select(Transaction).order_by(Transaction.occurred_at.desc(), Transaction.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(Transaction.customer_id == customer_id)
    if since is not None:
        query = query.where(Transaction.occurred_at >= since)
    if until is not None:
        query = query.where(Transaction.occurred_at < until)
    if before:
        query = query.where(tuple_(Transaction.occurred_at, Transaction.id) < before)
    return list((await session.execute(query)).scalars())


# --- recording transactions in bulk (service.py) -----------------------------------

_transactions = Transaction.__table__
_customers = Customer.__table__


@cache
def _by_external_ids(dialect: str):
    return select(_transactions).where(one_of(_transactions.c.external_id, dialect))


async def transactions_by_external_ids(session: AsyncSession, external_ids) -> dict[str, dict]:
    found: dict[str, dict] = {}
    dialect = dialect_name(session)
    for chunk in key_chunks(external_ids, dialect):
        result = await session.execute(_by_external_ids(dialect), {"ids": chunk})
        found.update((row["external_id"], dict(row)) for row in result.mappings())
    return found


async def lock_customers(session: AsyncSession, customer_ids) -> dict[str, dict]:
    """id → {merged_into, purchase_count}, row-locked on PostgreSQL (in id order, so two
    writers cannot deadlock) so purchase counts and summaries update without races;
    SQLite's single writer needs no lock."""

    if len(customer_ids) == 1:  # a purchase through the API: on the driver, a read per purchase
        (customer_id,) = customer_ids
        rows = await fetch_all(session, _lock_customer, {"id": customer_id})
        return {id_: {"id": id_, "merged_into": merged, "purchase_count": count} for id_, merged, count in rows}
    found: dict[str, dict] = {}
    dialect = dialect_name(session)
    for chunk in key_chunks(sorted(customer_ids), dialect):
        result = await session.execute(_lock_customers(dialect), {"ids": chunk})
        found.update((row["id"], dict(row)) for row in result.mappings())
    return found


# One customer by `=`: PostgreSQL planned the `= ANY(array)` form afresh at every execution
# (a custom plan for the array it was given, 4,017 plans for 4,000 purchases, ~80 µs each);
# this one's generic plan is kept after the fifth.
_lock_customer = (
    select(_customers.c.id, _customers.c.merged_into, _customers.c.purchase_count)
    .where(_customers.c.id == bindparam("id"))
    .with_for_update()
)


@cache
def _lock_customers(dialect: str):
    return (
        select(_customers.c.id, _customers.c.merged_into, _customers.c.purchase_count)
        .where(one_of(_customers.c.id, dialect))
        .order_by(_customers.c.id)
        .with_for_update()
    )


# status and the refunded sums start at their server defaults (recorded, 0, 0).
_TRANSACTION_COLUMNS = (
    "id",
    "customer_id",
    "amount",
    "currency",
    "occurred_at",
    "external_id",
    "margin",
    "cost",
    "recorded_at",
    "reporting_amount",
    "reporting_currency",
    "fx_rate",
)


_transaction_values = itemgetter(*_TRANSACTION_COLUMNS)


async def insert_transactions(session: AsyncSession, rows: list[dict]) -> None:
    await bulk_insert(session, _transactions, _TRANSACTION_COLUMNS, list(map(_transaction_values, rows)))


_ADD_PURCHASES = (
    update(_customers)
    .where(_customers.c.id == bindparam("customer_id"))
    .values(purchase_count=_customers.c.purchase_count + bindparam("added"))
)


async def add_purchases(session: AsyncSession, added: dict[str, int]) -> None:
    if not added:
        return
    if stages(session, added):  # PostgreSQL: one UPDATE … FROM the staged counts
        staged = await stage(session, _customers, ("id", "purchase_count"), list(added.items()))
        await session.execute(
            update(_customers)
            .where(_customers.c.id == staged.c.id)
            .values(purchase_count=_customers.c.purchase_count + staged.c.purchase_count)
        )
    else:
        rows = [{"customer_id": customer_id, "added": n} for customer_id, n in added.items()]
        await bulk_execute(session, _ADD_PURCHASES, rows)


# --- refunds and voids (corrections.py) ---------------------------------------------


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
