"""identify's queries: all SQL of the service lives here."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from operator import itemgetter

from sqlalchemy import bindparam, case, delete, func, literal_column, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Customer, CustomerScore, PurchaseDay, PurchaseSummary, Transaction
from shared.bulk import bulk_execute, bulk_insert, bulk_upsert, key_chunks, one_of, stage, stages


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


# Built once: the hot read path skips statement construction and the ORM. The
# customer's current scores come along in the same row (an outer join).
_SCORES = CustomerScore.__table__
_SCORE_FIELDS = tuple(column.name for column in _SCORES.c if column.name != "customer_id")
_READ_CUSTOMER = (
    select(Customer.__table__, *(_SCORES.c[name].label(f"score_{name}") for name in _SCORE_FIELDS))
    .outerjoin(_SCORES, _SCORES.c.customer_id == Customer.__table__.c.id)
    .where(Customer.__table__.c.id == bindparam("customer_id"))
)


async def read_customer(session: AsyncSession, customer_id: str) -> dict | None:
    """One customer as a dict, with `scores` (None before its first scoring)."""

    row = (await session.execute(_READ_CUSTOMER, {"customer_id": customer_id})).mappings().first()
    if row is None:
        return None
    customer = {key: value for key, value in row.items() if not key.startswith("score_")}
    scored = row["score_scored_at"] is not None
    customer["scores"] = {name: row[f"score_{name}"] for name in _SCORE_FIELDS} if scored else None
    return customer


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


# --- recording transactions in bulk (services/identify/transactions.py) ------------

_transactions = Transaction.__table__
_customers = Customer.__table__
_days = PurchaseDay.__table__
_summaries = PurchaseSummary.__table__


@lru_cache(maxsize=None)
def _by_external_ids(dialect: str):
    return select(_transactions).where(one_of(_transactions.c.external_id, dialect))


async def transactions_by_external_ids(session: AsyncSession, external_ids) -> dict[str, dict]:
    found: dict[str, dict] = {}
    dialect = session.bind.dialect.name
    for chunk in key_chunks(external_ids, dialect):
        result = await session.execute(_by_external_ids(dialect), {"ids": chunk})
        found.update((row["external_id"], dict(row)) for row in result.mappings())
    return found


async def lock_customers(session: AsyncSession, customer_ids) -> dict[str, dict]:
    """id → {merged_into, purchase_count}, row-locked on PostgreSQL (in id order, so two
    writers cannot deadlock) so purchase counts and summaries update without races;
    SQLite's single writer needs no lock."""

    found: dict[str, dict] = {}
    dialect = session.bind.dialect.name
    for chunk in key_chunks(sorted(customer_ids), dialect):
        result = await session.execute(_lock_customers(dialect), {"ids": chunk})
        found.update((row["id"], dict(row)) for row in result.mappings())
    return found


@lru_cache(maxsize=None)
def _lock_customers(dialect: str):
    return (
        select(_customers.c.id, _customers.c.merged_into, _customers.c.purchase_count)
        .where(one_of(_customers.c.id, dialect))
        .order_by(_customers.c.id)
        .with_for_update()
    )


async def survivors(session: AsyncSession, customer_ids) -> dict[str, str]:
    """merged id → its survivor, for those of customer_ids that were merged."""

    found: dict[str, str] = {}
    dialect = session.bind.dialect.name
    for chunk in key_chunks(set(customer_ids), dialect):
        result = await session.execute(_survivors(dialect), {"ids": chunk})
        found.update((row.id, row.merged_into) for row in result)
    return found


@lru_cache(maxsize=None)
def _survivors(dialect: str):
    return select(_customers.c.id, _customers.c.merged_into).where(
        one_of(_customers.c.id, dialect), _customers.c.merged_into.is_not(None)
    )


# status and the refunded sums start at their server defaults (recorded, 0, 0).
_TRANSACTION_COLUMNS = ("id", "customer_id", "amount", "currency", "occurred_at", "external_id", "margin", "cost",
                        "recorded_at", "reporting_amount", "reporting_currency", "fx_rate")


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


async def transactions_for_summaries(session: AsyncSession, customer_ids) -> list[dict]:
    """The fields the summaries need, of every recorded (not voided) transaction of these customers."""

    rows: list[dict] = []
    dialect = session.bind.dialect.name
    for chunk in key_chunks(customer_ids, dialect):
        result = await session.execute(_summary_inputs(dialect), {"ids": chunk})
        rows.extend(dict(row) for row in result.mappings())
    return rows


@lru_cache(maxsize=None)
def _summary_inputs(dialect: str):
    names = ("customer_id", "occurred_at", "amount", "margin", "cost", "reporting_amount", "fx_rate", "refunded_amount",
             "refunded_reporting_amount")
    columns = [_transactions.c[name] for name in names]
    # A voided transaction was recorded in error: it is in no count and no sum.
    return select(*columns).where(one_of(_transactions.c.customer_id, dialect), _transactions.c.status != "voided")


# --- purchase days and summaries (services/identify/summaries.py) ------------------


def _add_nullable(column, incoming):
    """Sum of two optional amounts: NULL only while neither side has one."""

    return case(
        (incoming.is_(None), column),
        (column.is_(None), incoming),
        else_=column + incoming,
    )


def _on_day_conflict(statement):
    return statement.on_conflict_do_update(
        index_elements=["customer_id", "day"],
        set_={
            "purchases": _days.c.purchases + statement.excluded.purchases,
            "spend": _days.c.spend + statement.excluded.spend,
        },
    )


_DAY_COLUMNS = ("customer_id", "day", "purchases", "spend")


async def add_purchase_days(session: AsyncSession, rows: list[dict]) -> None:
    """Merge (customer_id, day, purchases, spend) rows into purchase_days."""

    await bulk_upsert(session, _days, _DAY_COLUMNS, rows, _on_day_conflict)


_SUMMARY_COLUMNS = ("customer_id", "first_purchase_at", "last_purchase_at", "purchases", "purchase_days",
                    "first_day_spend", "total_spend", "total_margin", "total_cost", "discounted_spend",
                    "discount_rate", "updated_at")


async def add_to_summaries(session: AsyncSession, rows: list[dict]) -> None:
    """Merge one row per customer (first/last purchase, purchases, spend, margin, cost of
    the new transactions; purchase days and first day's spend as if the summary were
    new) into purchase_summaries. Call after add_purchase_days: an existing summary
    reads those two from the customer's purchase days (through their primary key)."""

    await bulk_upsert(session, _summaries, _SUMMARY_COLUMNS, rows, _on_summary_conflict)


_day = _days.alias("d")
_EXCLUDED_CUSTOMER = literal_column("excluded.customer_id")


def _on_summary_conflict(statement):
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={
            "first_purchase_at": case(
                (new.first_purchase_at < _summaries.c.first_purchase_at, new.first_purchase_at),
                else_=_summaries.c.first_purchase_at,
            ),
            "last_purchase_at": case(
                (new.last_purchase_at > _summaries.c.last_purchase_at, new.last_purchase_at),
                else_=_summaries.c.last_purchase_at,
            ),
            "purchases": _summaries.c.purchases + new.purchases,
            "total_spend": _summaries.c.total_spend + new.total_spend,
            "total_margin": _add_nullable(_summaries.c.total_margin, new.total_margin),
            "total_cost": _add_nullable(_summaries.c.total_cost, new.total_cost),
            "discounted_spend": _summaries.c.discounted_spend + new.discounted_spend,
            # Sums at two rates are no sum at all: mark the row stale for the next refit.
            "discount_rate": case(
                (_summaries.c.discount_rate == new.discount_rate, new.discount_rate), else_=None
            ),
            "updated_at": new.updated_at,
            # Read from the customer's purchase days. `excluded` is spelled out: SQLAlchemy
            # would add its table to the subquery's FROM (nothing to correlate it with).
            "purchase_days": select(func.count()).where(_day.c.customer_id == _EXCLUDED_CUSTOMER).scalar_subquery(),
            "first_day_spend": select(_day.c.spend)
            .where(_day.c.customer_id == _EXCLUDED_CUSTOMER)
            .order_by(_day.c.day)
            .limit(1)
            .scalar_subquery(),
        },
    )


async def delete_summaries(session: AsyncSession, customer_ids) -> None:
    dialect = session.bind.dialect.name
    for chunk in key_chunks(customer_ids, dialect):
        for statement in _summary_deletes(dialect):
            await session.execute(statement, {"ids": chunk})


@lru_cache(maxsize=None)
def _summary_deletes(dialect: str):
    return tuple(delete(table).where(one_of(table.c.customer_id, dialect)) for table in (_days, _summaries))
