"""Bulk inserts: many rows, as tuples, written the fastest way each database offers.

`session.execute(insert(table), dicts)` costs about as much in SQLAlchemy's per-row
parameter handling as in the database itself, and on PostgreSQL an executemany is
a round of the protocol per row. `bulk_insert` skips both:

- PostgreSQL: `COPY … FROM STDIN` (asyncpg's binary `copy_records_to_table`) inside
  the session's transaction, the same work as PostgreSQL's own COPY of the rows; fewer
  than COPY_FROM_ROWS rows go straight to asyncpg (shared/db/driver.py) as one INSERT from
  an array per column (shared/db/unnest.py);
- SQLite: one `executemany` of driver-ready tuples.

Values go through each column's own SQLAlchemy bind processor first (a value that
repeats, such as a batch's one `recorded_at`, is converted once), so the stored rows
are exactly those `session.execute(insert(table), dicts)` stores. A clash with a
unique key raises SQLAlchemy's `IntegrityError`, as `session.execute` would.

`bulk_execute` does the same for any statement run once per row (an upsert, an
UPDATE by key). On PostgreSQL an UPDATE is still an execution per row (an INSERT or
upsert of cast values becomes one from arrays, as above), so for many rows
`bulk_upsert` and `stage` go set-based there instead: the rows are COPied into a
temporary table shaped like the target's columns (emptied at commit) and one
statement reads them from it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Dialect,
    Executable,
    LargeBinary,
    Table,
    TableClause,
    all_,
    any_,
    bindparam,
    select,
)
from sqlalchemy import column as column_clause
from sqlalchemy import table as table_clause
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db.database import InlineSession, dialect_insert, dialect_name
from shared.db.driver import as_sqlalchemy_errors, connections, executemany, gather_write

if TYPE_CHECKING:
    import asyncpg

COPY_FROM_ROWS = 100  # PostgreSQL: fewer rows than this go as one INSERT (from arrays where it can)
IN_CHUNK = 1000  # IN lists are cut to this many values: well under every driver's parameter limit

Row = tuple[Any, ...]
Processors = tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, bind processor)


async def bulk_insert(session: AsyncSession, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
    """INSERT rows (tuples in the order of `columns`) into table in the session's transaction."""

    if not rows:
        return
    conn, driver = await connections(session)
    dialect = conn.dialect
    rows = _driver_values(rows, _processors(table, tuple(columns), dialect))
    if driver is not None and len(rows) >= COPY_FROM_ROWS:
        await _copy(driver, table, columns, rows)
    else:
        await _run_many(session, conn, driver, _insert_sql(table, tuple(columns), dialect), rows)


async def _run_many(
    session: AsyncSession, conn: AsyncConnection, driver: asyncpg.Connection | None, sql: str, rows: list[Row]
) -> None:
    """Driver SQL once per row of driver-ready values: on PostgreSQL through the asyncpg
    connection (gathered in a `writes_together` block, or from arrays where it can be)."""

    if driver is None:
        await conn.exec_driver_sql(sql, rows)
    elif not await gather_write(session, sql, rows):
        await executemany(driver, sql, rows)


@lru_cache(maxsize=256)
def _insert_sql(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    if dialect.paramstyle == "qmark":
        marks = ", ".join("?" * len(columns))
    elif dialect.paramstyle == "numeric_dollar":  # asyncpg: cast as SQLAlchemy casts, for unnest.plan
        marks = ", ".join(f"${n}::{table.c[name].type.compile(dialect)}" for n, name in enumerate(columns, 1))
    else:  # format / pyformat drivers
        marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) VALUES ({marks})"


@lru_cache(maxsize=256)
def _processors(table: Table, columns: tuple[str, ...], dialect: Dialect) -> Processors:
    """(position, bind processor) of the columns whose values need converting; bytes
    are left as they are (every driver takes them, and each is different anyway)."""

    found = []
    for position, name in enumerate(columns):
        column_type = table.c[name].type
        if isinstance(column_type, LargeBinary):
            continue
        processor = column_type._cached_bind_processor(dialect)
        if processor is not None:
            found.append((position, processor))
    return tuple(found)


# Types whose equal values convert to equal driver values (`values.count` compares with ==,
# and 1 == 1.0 == True, a Decimal equal to an int: those are left to the row-by-row path).
_SAME_WHEN_EQUAL = frozenset({str, datetime})


def _driver_values(rows: list[Row], processors: Processors) -> list[Row]:
    if not processors:
        return rows
    columns: list[Sequence[Any]] = list(zip(*rows))
    for position, processor in processors:
        converted: dict[Any, Any] = {}
        values = columns[position]
        first = values[0]
        if first is not None and type(first) in _SAME_WHEN_EQUAL and values.count(first) == len(values):
            # One value in every row (a batch's time, a template's fields): converted once, and
            # the column compared at C speed instead of looked up row by row.
            columns[position] = [processor(first)] * len(values)
            continue
        try:
            columns[position] = [
                None
                if value is None
                else converted[value]
                if value in converted
                else converted.setdefault(value, processor(value))
                for value in values
            ]
        except TypeError:  # an unhashable value: convert each one
            columns[position] = [None if value is None else processor(value) for value in values]
    return list(zip(*columns))


async def _copy(
    driver: asyncpg.Connection, table: Table | TableClause, columns: Sequence[str], rows: list[Row]
) -> None:
    """COPY rows into table on the session's asyncpg connection (`connections`: its BEGIN sent)."""

    async with as_sqlalchemy_errors(f"COPY {table.name} ({', '.join(columns)})"):
        await driver.copy_records_to_table(table.name, records=rows, columns=list(columns), schema_name=table.schema)


async def bulk_execute(session: AsyncSession, statement: Executable, rows: list[dict[str, Any]]) -> None:
    """session.execute(statement, rows) for an executemany of many rows (an upsert, an
    UPDATE by key): compiled once, each row's values converted by the statement's own
    bind processors straight into driver tuples."""

    if not rows:
        return
    conn, driver = await connections(session)
    sql, sources, processors = _compiled(statement, tuple(rows[0]), conn.dialect)
    if all(key is not None for key, _ in sources):
        values = list(map(_getter(tuple(key for key, _ in sources)), rows))
    else:  # the statement's own constants (a LIMIT) sit between the rows' values
        values = [tuple(constant if key is None else row[key] for key, constant in sources) for row in rows]
    await _run_many(session, conn, driver, sql, _driver_values(values, processors))


async def fetch_all(
    session: AsyncSession | InlineSession, statement: Executable, params: dict[str, Any]
) -> Sequence[Sequence[Any]]:
    """`session.execute(statement, params).all()` for a hot read whose rows are used by
    position: on PostgreSQL the statement, compiled once, runs on the asyncpg connection
    (about 90 µs of CPU less per read, shared/db/driver.py), its rows asyncpg's records.
    Its columns must need no result conversion (integers, text, bytes)."""

    if isinstance(session, InlineSession) or dialect_name(session) != "postgresql":
        return (await session.execute(statement, params)).all()  # SQLite runs it inline already
    conn, driver = await connections(session)
    assert driver is not None, "a PostgreSQL session"
    sql, sources, processors = _compiled(statement, tuple(params), conn.dialect)
    values = tuple(constant if key is None else params[key] for key, constant in sources)
    (converted,) = _driver_values([values], processors)
    async with as_sqlalchemy_errors(sql):
        rows: list[Any] = await driver.fetch(sql, *converted)
    return rows


@lru_cache(maxsize=256)
def _compiled(
    statement: Any, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[tuple[Any, Any], ...], Processors]:
    """The statement's SQL for the dialect; for each positional parameter, (row key,
    None) or, for a constant of the statement's own, (None, its value); and the
    (position, processor) of those that need converting."""

    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not compiled.positional:
        raise ValueError(f"bulk_execute needs a positional paramstyle, not {dialect.paramstyle}")
    sources: list[tuple[Any, Any]] = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        sources.append((bind.key, None) if bind.key in keys else (None, bind.effective_value))
    processors = compiled._bind_processors  # SQLAlchemy's own per-parameter converters
    return (
        compiled.string,
        tuple(sources),
        tuple((position, processors[name]) for position, name in enumerate(compiled.positiontup) if name in processors),
    )


def _getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Row]:
    """row → the tuple of its values at keys (itemgetter, a tuple even for one key)."""

    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return itemgetter(*keys)


def stages(session: AsyncSession, rows: Sized) -> bool:
    """Whether stage() is the way to write these rows (PostgreSQL, many of them)."""

    return dialect_name(session) == "postgresql" and len(rows) >= COPY_FROM_ROWS


async def stage(session: AsyncSession, target: Table, columns: Sequence[str], rows: list[Row]) -> TableClause:
    """COPY rows (tuples in the order of `columns`) into a temporary table with those
    columns of `target` (PostgreSQL only; its rows go at commit) and return it, for a
    set-based statement."""

    staged = _staged_table(target, tuple(columns))
    conn, driver = await connections(session)
    assert driver is not None, "COPY is PostgreSQL's"
    await conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged.name} ON COMMIT DELETE ROWS AS "
        f"SELECT {', '.join(columns)} FROM {target.name} WITH NO DATA"
    )
    await conn.exec_driver_sql(f"TRUNCATE {staged.name}")  # rows an earlier statement of this transaction staged
    await _copy(driver, staged, columns, _driver_values(rows, _processors(target, tuple(columns), conn.dialect)))
    return staged


@lru_cache(maxsize=64)
def _staged_table(target: Table, columns: tuple[str, ...]) -> TableClause:
    name = f"staged_{target.name}_{zlib.crc32(' '.join(columns).encode()):08x}"
    return table_clause(name, *(column_clause(column, target.c[column].type) for column in columns))


async def bulk_upsert(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    rows: list[dict[str, Any]],
    on_conflict: Callable[[Any], Executable],
) -> None:
    """INSERT rows (dicts) into table, each clash resolved as `on_conflict(insert)` says
    (a function of the dialect's INSERT, for its `excluded`): staged (stage()) where
    stages() says so, else an executemany.

    The statement is built once per table, columns, dialect and `on_conflict`'s qualified
    name, so `on_conflict` may depend on nothing but the table and constants: callers define
    it as a closure per call, and keying the cache by the closure itself missed every time
    (building an upsert costs more than running it)."""

    if not rows:
        return
    dialect = dialect_name(session)
    key = (table, tuple(columns), f"{on_conflict.__module__}.{on_conflict.__qualname__}", dialect)
    if stages(session, rows):
        await stage(session, table, columns, list(map(_getter(tuple(columns)), rows)))
        await session.execute(_upsert(key, on_conflict, staged=True))
    else:
        await bulk_execute(session, _upsert(key, on_conflict, staged=False), rows)


_UPSERTS: dict[tuple[Any, ...], Executable] = {}


def _upsert(
    key: tuple[Table, tuple[str, ...], str, str], on_conflict: Callable[[Any], Executable], *, staged: bool
) -> Executable:
    statement = _UPSERTS.get((*key, staged))
    if statement is None:
        table, columns, _, dialect = key
        insert = dialect_insert(table, dialect)
        if staged:
            source = _staged_table(table, columns)
            insert = insert.from_select(list(columns), select(*(source.c[name] for name in columns)))
        statement = _UPSERTS[(*key, staged)] = on_conflict(insert)
    return statement


def one_of(column: ColumnElement[Any], dialect: str, name: str = "ids") -> ColumnElement[bool]:
    """`column` is one of the values of the list parameter `name`: one array parameter
    (`= ANY`) on PostgreSQL, which parses and plans once for any number of values
    where an IN list of a thousand placeholders took milliseconds; an expanding IN
    on SQLite."""

    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def none_of(column: ColumnElement[Any], dialect: str, name: str = "ids") -> ColumnElement[bool]:
    """`column` is none of the values of the list parameter `name`: `one_of`'s negation
    (`<> ALL` of one array parameter on PostgreSQL, an expanding NOT IN on SQLite)."""

    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column != all_(bindparam(name, type_=ARRAY(column.type)))
    return column.not_in(bindparam(name, expanding=True))


def key_chunks(values: Iterable[Any], dialect: str) -> Iterator[list[Any]]:
    """The values in lists to pass as one_of()'s parameter: all at once on PostgreSQL."""

    values = list(values)
    size = max(len(values), 1) if dialect == "postgresql" else IN_CHUNK
    for start in range(0, len(values), size):
        yield values[start : start + size]
