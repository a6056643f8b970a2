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

import json
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
# The matches' rowids as _matches read them (a JSON array): the trigram index is read once.
_READ_MATCHES = text("SELECT value FROM json_each(:match_rows)").columns(Column("value", Integer))

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


# Likewise for `q`: past DENSE_MATCHES matches, SQLite walks the sort's index (in the
# default order, the ids') and checks each customer it meets against the matches (their
# rowids read once from the trigram index) through its search row, instead of looking up
# and sorting every match ("smith" in a million customers sorted by name: 130-640 ms the
# first way under load, ~18 ms the second; within a segment sorted by CLV: 61 ms p50
# mapping every match to its customer and scores, ~14 ms walking (segment, CLV); in the
# default order "smith" 17.5 -> 7.7 ms, "son" 61 -> 16 ms, "com", in nearly every email,
# 260 -> 96 ms). The walk is bounded (WALK_CAP, below).
DENSE_MATCHES = 4096
_FTS_PROBE = text("SELECT rowid FROM customer_search WHERE customer_search MATCH :fts LIMIT :cap")


async def _matches(session, q: str) -> list[int] | None:
    """The rowids of the search rows matching `q`, or None past DENSE_MATCHES of them. The
    query then reads these instead of the trigram index again: probing with a count and
    matching again cost a rare `q` (a few hundred matches) ~1-2 ms more in a million."""

    rowids = (await session.execute(_FTS_PROBE, {"fts": fts_phrase(q), "cap": DENSE_MATCHES})).scalars().all()
    return None if len(rowids) >= DENSE_MATCHES else list(rowids)


def _conditions(
    dialect: str, where: CustomerFilter, params: dict, *, dense: bool = False, walked_id=None, matches=None
) -> tuple[list, bool, bool]:
    """WHERE clauses, and whether scores and summaries must be joined (inner).

    `walked_id`: with a common `q` on SQLite, the id column of the index the sort walks;
    `matches`: with a rarer one, the rowids of its search rows (_matches)."""

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
        elif matches is not None:
            matched = select(search_rows.c.customer_id).where(search_rows.c.id.in_(_READ_MATCHES))
            conditions.append(_customers.c.id.in_(matched))
            params["match_rows"] = json.dumps(matches)
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


def _past(order: list, position: tuple, descending: bool):
    """Rows after `position` (values of the `order` columns) in the order's direction."""

    columns = tuple_(*order) if len(order) > 1 else order[0]
    bound = tuple_(*position) if len(position) > 1 else position[0]
    return columns < bound if descending else columns > bound


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
    matches: list[int] | None = None,
):
    params: dict[str, Any] = {}
    walked_id = (_id_column(sort.key) if not nulls else _customers.c.id) if dense_q else None
    conditions, needs_scores, needs_summaries = _conditions(
        dialect, where, params, dense=dense, walked_id=walked_id, matches=matches
    )
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
        conditions.append(_past(order, (after.id,) if nulls else (after.value, after.id), sort.descending))

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
    return query, params, order


async def search_customers(
    session: AsyncSession, *, where: CustomerFilter, sort: Sort, after: After | None, limit: int
) -> list[dict]:
    """Up to `limit` customers as dicts (customer fields, `scores` or None, purchase
    summary fields, and `_nulls`: whether the row came from the NULLs phase)."""

    dialect = dialect_of(session)
    ranged = where.last_purchase_after is not None or where.last_purchase_before is not None
    dense = dialect == "sqlite" and ranged and sort.key != "last_purchase" and await _dense_range(session, where)
    matches = await _matches(session, where.q) if dialect == "sqlite" and where.q is not None else None
    dense_q = dialect == "sqlite" and where.q is not None and matches is None
    rows: list[dict] = []
    phases = (False, True) if sort.nullable else (False,)
    for nulls in phases:
        if after is not None and after.nulls and not nulls:
            continue  # the cursor is already past the rows with a value
        position = after if after is not None and after.nulls == nulls else None
        need = limit - len(rows)
        query, params, order = _phase(
            dialect, where, sort, nulls=nulls, after=position, limit=need, dense=dense, dense_q=dense_q, matches=matches
        )
        found = None
        if dense_q:
            found = await _bounded_walk(session, query, params, order, sort, where, nulls, position, need)
        if found is None:  # no walk, or it stopped short: the matches, looked up and sorted
            if dense_q:
                query, params, _ = _phase(dialect, where, sort, nulls=nulls, after=position, limit=need, dense=dense)
            found = [_customer_row(row, nulls) for row in (await session.execute(query, params)).mappings()]
        rows.extend(found)
        if len(rows) >= limit:
            break
    return rows


# A common `q` under a sort walks the sort's index and checks each customer against the
# matches: fast while matches are spread through that order, slow where they gather far
# down it. "tyl" sorted by name (~5,000 Tylers in a million, nobody before the Ts)
# walked ~950,000 customers: 3.2-4.4 s; its matches looked up and sorted, 40-60 ms. So a
# walk goes at most WALK_CAP customers of the sort's index, to a bound read from that
# index alone with the filters it holds (any bound keeps the walk a prefix of the order:
# it only sets how far to go; read with the customers' other filters it cost 25 ms), and
# a page the walk has not filled by then is read from the matches instead
# (docs/benchmarks.md, "The console").
WALK_CAP = 10_000


def _index_filters(where: CustomerFilter, sort: Sort) -> list:
    """The filters on the table whose index the sort walks (a segment for CLV, a range for
    last purchase): a bound read from that index then counts the customers the walk meets."""

    filters: list = []
    if sort.key == "clv":
        if where.segment is not None:
            filters.append(_scores.c.segment == where.segment)
        if where.min_clv is not None:
            filters.append(_scores.c.predicted_clv >= where.min_clv)
        if where.max_clv is not None:
            filters.append(_scores.c.predicted_clv <= where.max_clv)
    elif sort.key == "last_purchase":
        if where.last_purchase_after is not None:
            filters.append(_summaries.c.last_purchase_at >= where.last_purchase_after)
        if where.last_purchase_before is not None:
            filters.append(_summaries.c.last_purchase_at < where.last_purchase_before)
    return filters


async def _bounded_walk(session, query, params, order, sort, where, nulls, position, need) -> list[dict] | None:
    """The phase's rows from a walk of at most WALK_CAP customers of the sort's order; None
    when that walk did not fill the page."""

    edge_query = select(*order)
    if not nulls:  # this phase walks the values, in the index of the sort's table
        edge_query = edge_query.where(*_index_filters(where, sort))
        if sort.nullable:
            edge_query = edge_query.where(order[0].is_not(None))
    if position is not None:
        edge_query = edge_query.where(
            _past(order, (position.id,) if nulls else (position.value, position.id), sort.descending)
        )
    directed = [column.desc() if sort.descending else column for column in order]
    edge = (await session.execute(edge_query.order_by(*directed).offset(WALK_CAP - 1).limit(1))).first()
    if edge is not None:  # up to the bound, inclusive
        keys, bound = (tuple_(*order), tuple_(*edge)) if len(order) > 1 else (order[0], edge[0])
        query = query.where(keys >= bound if sort.descending else keys <= bound)
    found = [_customer_row(row, nulls) for row in (await session.execute(query, params)).mappings()]
    return found if edge is None or len(found) >= need else None


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
