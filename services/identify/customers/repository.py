"""Queries of the customers domain: customers, their match keys and their search index rows."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Customer, CustomerNameToken, CustomerScore, Suppression
from shared.db.bulk import key_chunks, one_of
from shared.db.database import dialect_name


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


_customers = Customer.__table__


async def held_referral_codes(session: AsyncSession, codes: list[str]) -> set[str]:
    """The codes among `codes` a customer already holds."""

    held: set[str] = set()
    for start in range(0, len(codes), 1000):
        query = select(_customers.c.referral_code).where(_customers.c.referral_code.in_(codes[start : start + 1000]))
        held.update((await session.execute(query)).scalars())
    return held


_BY_REFERRAL_CODE = select(_customers.c.id, _customers.c.merged_into).where(
    _customers.c.referral_code == bindparam("code")
)


async def by_referral_code(session: AsyncSession, code: str):
    """(id, merged_into) of the customer holding the code, if any."""

    return (await session.execute(_BY_REFERRAL_CODE, {"code": code})).first()


async def survivors(session: AsyncSession, customer_ids) -> dict[str, str]:
    """merged id → its survivor, for those of customer_ids that were merged."""

    found: dict[str, str] = {}
    dialect = dialect_name(session)
    for chunk in key_chunks(set(customer_ids), dialect):
        result = await session.execute(_survivors(dialect), {"ids": chunk})
        found.update((row.id, row.merged_into) for row in result)
    return found


@cache
def _survivors(dialect: str):
    return select(_customers.c.id, _customers.c.merged_into).where(
        one_of(_customers.c.id, dialect), _customers.c.merged_into.is_not(None)
    )


# --- match keys (services/identify/customers/normalize.py) --------------------------


async def replace_name_tokens(session: AsyncSession, customer_id: str, tokens: set[str]) -> None:
    await session.execute(delete(CustomerNameToken).where(CustomerNameToken.customer_id == customer_id))
    if tokens:
        await session.execute(
            CustomerNameToken.__table__.insert(), [{"token": t, "customer_id": customer_id} for t in sorted(tokens)]
        )


# --- the search index (read by services/identify/search/repository.py) -------------


def dialect_of(session) -> str:
    # SQLite reads come through shared.db.database.InlineSession, which has an engine, no bind.
    bind = getattr(session, "bind", None) or session.engine
    return bind.dialect.name


# SQLite only, made by the migration (no model: create_all must not make a plain table).
search_rows = Table(
    "customer_search_rows", MetaData(), Column("id", Integer, primary_key=True), Column("customer_id", String(36))
)
SEARCHED = ("name", "email", "phone", "phone_key", "external_id")

_INDEX_NEW = text(
    f"INSERT INTO customer_search (rowid, {', '.join(SEARCHED)}) "
    f"SELECT r.id, {', '.join('c.' + column for column in SEARCHED)} "
    "FROM customers c JOIN customer_search_rows r ON r.customer_id = c.id WHERE c.id IN :ids"
).bindparams(bindparam("ids", expanding=True))


async def index_new_customers(session: AsyncSession, customer_ids: list[str]) -> None:
    """Add customers just inserted (and flushed) to the SQLite search index; PostgreSQL's
    GIN index keeps itself. Every path that inserts customers must call this."""

    if dialect_of(session) != "sqlite" or not customer_ids:
        return
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start : start + 1000]
        await session.execute(search_rows.insert(), [{"customer_id": customer_id} for customer_id in chunk])
        await session.execute(_INDEX_NEW, {"ids": chunk})


async def suppressed(session: AsyncSession, digests: list[str]) -> bool:
    """Whether any of the digests is on the erasure suppression list."""

    if not digests:
        return False
    query = select(Suppression.digest).where(Suppression.digest.in_(digests)).limit(1)
    return (await session.execute(query)).first() is not None


async def optimise_search_index(session: AsyncSession) -> None:
    """Merge the SQLite FTS5 index's segments: a delete only adds a tombstone, and the erased
    tokens stay in the old segments until they are merged away (nothing on PostgreSQL,
    whose GIN index drops dead entries at VACUUM: docs/privacy.md)."""

    if dialect_of(session) == "sqlite":
        await session.execute(text("INSERT INTO customer_search (customer_search) VALUES ('optimize')"))
