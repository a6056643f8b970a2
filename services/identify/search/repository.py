"""Customer lists: filters, substring search and keyset pages under a sort.

Substring search (`q`) reads a trigram index, built by migration 5e7a1c9d2b40:

- SQLite: the FTS5 table `customer_search` (trigram tokenizer, contentless), whose
  rowids `customer_search_rows` maps to customer ids. Triggers on customers carry
  changes and deletes into it; whoever creates customers calls `index_new_customers`
  (customers/repository.py; set-based: a per-row trigger cost bulk imports 4x more).
  `q` is one FTS5 phrase (double quotes doubled), which for trigrams is a substring
  match within one column, case-insensitive.
- PostgreSQL: pg_trgm's GIN index on PG_SEARCH_TEXT (the searched columns joined by
  U+001F, which `q` may not hold, so a match never spans two columns) read by ILIKE,
  with `\\`, `%` and `_` escaped.

A sort on a value that may be missing reads in two phases: the rows with a value, in
order of (value, id) through an index, then the rows without, in order of id. NULLs
are last in both directions on both databases, and each phase is an index walk.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    FromClause,
    Integer,
    exists,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers.repository import SEARCHED, dialect_of, search_rows
from services.identify.models import Customer, CustomerKind, CustomerScore, PurchaseSummary, Transaction
from services.identify.search.schemas import After, CustomerFilter, Sort

_customers = Customer.__table__
_scores = CustomerScore.__table__
_summaries = PurchaseSummary.__table__
_kinds = CustomerKind.__table__
_transactions = Transaction.__table__

_FTS_MATCH = text("SELECT rowid FROM customer_search WHERE customer_search MATCH :fts").columns(
    Column("rowid", Integer)
)

# Must stay the expression of the migration's GIN index, or PostgreSQL will not use it.
PG_SEARCH_TEXT = " || E'\\x1f' || ".join(f"coalesce(customers.{column}, '')" for column in SEARCHED)
_PG_MATCH = text(f"({PG_SEARCH_TEXT}) ILIKE :pattern ESCAPE '\\'")

SCORE_FIELDS = tuple(column.name for column in _scores.c if column.name != "customer_id")
SUMMARY_FIELDS = ("first_purchase_at", "last_purchase_at", "purchases", "total_spend")


def fts_phrase(q: str) -> str:
    """`q` as one FTS5 phrase: FTS5's operators and column filters read as text."""

    return '"' + q.replace('"', '""') + '"'


def like_pattern(q: str) -> str:
    """`q` as an ILIKE substring pattern with LIKE's wildcards read as text."""

    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _sort_column(key: str):
    return {
        "id": _customers.c.id,
        "name": _customers.c.name,
        "created_at": _customers.c.created_at,
        "clv": _scores.c.predicted_clv,
        "last_purchase": _summaries.c.last_purchase_at,
    }[key]


def _id_column(key: str):
    """The tie-breaker, from the table whose index holds the sort value."""

    return {"clv": _scores.c.customer_id, "last_purchase": _summaries.c.customer_id}.get(key, _customers.c.id)


# A last-purchase range is read through its index, and the rows then sorted, when few
# customers fall in it; when more than this many do, SQLite walks the sort's order
# instead and checks each customer's range with an EXISTS (no statistics tell its
# planner which is cheaper: for a 30-day window of a million customers, sorted by id,
# the index took ~800 ms, a join walking the ids ~180 ms (it built a Bloom filter over
# every summary first), the EXISTS ~1 ms).
DENSE_RANGE = 4096
_in_range = _summaries.alias("in_range")


async def _dense_range(session, where: CustomerFilter) -> bool:
    column = _summaries.c.last_purchase_at
    bounds = []
    if where.last_purchase_after is not None:
        bounds.append(column >= where.last_purchase_after)
    if where.last_purchase_before is not None:
        bounds.append(column < where.last_purchase_before)
    probe = select(func.count()).select_from(select(column).where(*bounds).limit(DENSE_RANGE).subquery())
    return (await session.execute(probe)).scalar() >= DENSE_RANGE


# Likewise for `q` under a sort other than id: past DENSE_MATCHES matches, SQLite walks
# the sort's index and checks each customer it meets against the matches (their rowids
# read once from the trigram index) through its search row, instead of looking up and
# sorting every match ("smith" in a million customers sorted by name: 130-640 ms the
# first way under load, ~18 ms the second; within a segment sorted by CLV: 61 ms p50
# mapping every match to its customer and scores, ~14 ms walking (segment, CLV)).
DENSE_MATCHES = 4096
_FTS_PROBE = text(
    "SELECT count(*) FROM (SELECT rowid FROM customer_search WHERE customer_search MATCH :fts LIMIT :cap)"
)


async def _dense_matches(session, q: str) -> bool:
    return (await session.execute(_FTS_PROBE, {"fts": fts_phrase(q), "cap": DENSE_MATCHES})).scalar() >= DENSE_MATCHES


def _conditions(
    dialect: str, where: CustomerFilter, params: dict, *, dense: bool = False, walked_id=None
) -> tuple[list, bool, bool]:
    """WHERE clauses, and whether scores and summaries must be joined (inner).

    `walked_id`: with a common `q` on SQLite, the id column of the index the sort walks."""

    conditions: list = [_customers.c.merged_into.is_(None)]
    needs_scores = needs_summaries = False
    if where.email_key is not None:
        conditions.append(_customers.c.email_key == where.email_key)
    if where.external_id is not None:
        conditions.append(_customers.c.external_id == where.external_id)
    if where.phone_key is not None:
        conditions.append(_customers.c.phone_key == where.phone_key)
    if where.q is not None:
        if dialect == "postgresql":
            conditions.append(_PG_MATCH)
            params["pattern"] = like_pattern(where.q)
        elif walked_id is not None:  # each customer of the walk: its search row among the matches?
            row_of = select(search_rows.c.id).where(search_rows.c.customer_id == walked_id).scalar_subquery()
            conditions.append(row_of.in_(_FTS_MATCH))
            params["fts"] = fts_phrase(where.q)
        else:
            matched = select(search_rows.c.customer_id).where(search_rows.c.id.in_(_FTS_MATCH))
            conditions.append(_customers.c.id.in_(matched))
            params["fts"] = fts_phrase(where.q)
    if where.segment is not None:
        conditions.append(_scores.c.segment == where.segment)
        needs_scores = True
    if where.min_clv is not None:
        conditions.append(_scores.c.predicted_clv >= where.min_clv)
        needs_scores = True
    if where.max_clv is not None:
        conditions.append(_scores.c.predicted_clv <= where.max_clv)
        needs_scores = True
    if where.kind is not None:
        conditions.append(exists().where(_kinds.c.customer_id == _customers.c.id, _kinds.c.kind == where.kind))
    summaries = _in_range if dense else _summaries
    ranged = []
    if where.last_purchase_after is not None:
        ranged.append(summaries.c.last_purchase_at >= where.last_purchase_after)
    if where.last_purchase_before is not None:
        ranged.append(summaries.c.last_purchase_at < where.last_purchase_before)
    if ranged and dense:
        conditions.append(exists().where(_in_range.c.customer_id == _customers.c.id, *ranged))
    elif ranged:
        conditions.extend(ranged)
        needs_summaries = True
    return conditions, needs_scores, needs_summaries


def _phase(
    dialect: str,
    where: CustomerFilter,
    sort: Sort,
    *,
    nulls: bool,
    after: After | None,
    limit: int,
    dense: bool,
    dense_q: bool = False,
):
    params: dict[str, Any] = {}
    walked_id = (_id_column(sort.key) if not nulls else _customers.c.id) if dense_q else None
    conditions, needs_scores, needs_summaries = _conditions(dialect, where, params, dense=dense, walked_id=walked_id)
    value = _sort_column(sort.key)
    row_id = _id_column(sort.key) if not nulls else _customers.c.id
    if sort.key == "clv":
        needs_scores = needs_scores or not nulls
    if sort.key == "last_purchase":
        needs_summaries = needs_summaries or not nulls
    if sort.nullable:
        conditions.append(value.is_(None) if nulls else value.is_not(None))
    if sort.key == "name" and dialect == "postgresql":
        value = value.collate("C")  # code point order, as SQLite's BINARY (and its index)
    order = [row_id] if nulls else [value, row_id]
    if after is not None:
        position = (after.id,) if nulls else (after.value, after.id)
        columns = tuple_(*order) if len(order) > 1 else order[0]
        bound = tuple_(*position) if len(position) > 1 else position[0]
        conditions.append(columns < bound if sort.descending else columns > bound)

    source: FromClause = _customers
    if needs_scores:
        source = source.join(_scores, _scores.c.customer_id == _customers.c.id)
    else:
        source = source.outerjoin(_scores, _scores.c.customer_id == _customers.c.id)
    if needs_summaries:
        source = source.join(_summaries, _summaries.c.customer_id == _customers.c.id)
    else:
        source = source.outerjoin(_summaries, _summaries.c.customer_id == _customers.c.id)
    query = (
        select(
            _customers,
            *(_scores.c[name].label(f"score_{name}") for name in SCORE_FIELDS),
            *(_summaries.c[name] for name in SUMMARY_FIELDS),
        )
        .select_from(source)
        .where(*conditions)
        .order_by(*(column.desc() if sort.descending else column for column in order))
        .limit(limit)
    )
    return query, params


async def search_customers(
    session: AsyncSession, *, where: CustomerFilter, sort: Sort, after: After | None, limit: int
) -> list[dict]:
    """Up to `limit` customers as dicts (customer fields, `scores` or None, purchase
    summary fields, and `_nulls`: whether the row came from the NULLs phase)."""

    dialect = dialect_of(session)
    ranged = where.last_purchase_after is not None or where.last_purchase_before is not None
    dense = dialect == "sqlite" and ranged and sort.key != "last_purchase" and await _dense_range(session, where)
    dense_q = (
        dialect == "sqlite" and where.q is not None and sort.key != "id" and await _dense_matches(session, where.q)
    )
    rows: list[dict] = []
    phases = (False, True) if sort.nullable else (False,)
    for nulls in phases:
        if after is not None and after.nulls and not nulls:
            continue  # the cursor is already past the rows with a value
        position = after if after is not None and after.nulls == nulls else None
        query, params = _phase(
            dialect, where, sort, nulls=nulls, after=position, limit=limit - len(rows), dense=dense, dense_q=dense_q
        )
        result = await session.execute(query, params)
        rows.extend(_customer_row(row, nulls) for row in result.mappings())
        if len(rows) >= limit:
            break
    return rows


def _customer_row(row, nulls: bool) -> dict:
    customer = {key: value for key, value in row.items() if not key.startswith("score_")}
    scored = row["score_scored_at"] is not None
    customer["scores"] = {name: row[f"score_{name}"] for name in SCORE_FIELDS} if scored else None
    customer["_nulls"] = nulls
    return customer


def sort_value(row: dict, sort: Sort) -> Any:
    if sort.key == "clv":
        return row["scores"]["predicted_clv"] if row["scores"] else None
    if sort.key == "last_purchase":
        return row["last_purchase_at"]
    return row[sort.key]


async def transactions_between(
    session: AsyncSession, *, start: datetime, end: datetime, after: tuple[str, datetime, str] | None, limit: int
) -> list[dict]:
    """Transactions with start <= occurred_at < end, by customer, then time, then id.

    That order walks the (customer_id, occurred_at, id) index the customer's own list
    uses, skipping what is out of the period inside the index: an export of any period
    reads that index at most once, and every purchase and import keeps no second index
    on occurred_at for it (the hot paths write each transaction once more per index)."""

    order = (_transactions.c.customer_id, _transactions.c.occurred_at, _transactions.c.id)
    query = (
        select(_transactions)
        .where(_transactions.c.occurred_at >= start, _transactions.c.occurred_at < end)
        .order_by(*order)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(*order) > after)
    return [dict(row) for row in (await session.execute(query)).mappings()]
