"""Bulk inserts: many rows, as tuples, written the fastest way each database offers.

`session.execute(insert(table), dicts)` costs about as much in SQLAlchemy's per-row
parameter handling as in the database itself, and on PostgreSQL an executemany is
a round of the protocol per row. `bulk_insert` skips both:

- PostgreSQL: `COPY … FROM STDIN` (asyncpg's binary `copy_records_to_table`) inside
  the session's transaction, the same work as PostgreSQL's own COPY of the rows;
- SQLite: one `executemany` of driver-ready tuples.

Values go through each column's own SQLAlchemy bind processor first (a value that
repeats, such as a batch's one `recorded_at`, is converted once), so the stored rows
are exactly those `session.execute(insert(table), dicts)` stores. A clash with a
unique key raises SQLAlchemy's `IntegrityError`, as `session.execute` would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from sqlalchemy import LargeBinary, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

COPY_FROM_ROWS = 100  # PostgreSQL: fewer rows than this go as one multi-row INSERT


async def bulk_insert(session: AsyncSession, table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """INSERT rows (tuples in the order of `columns`) into table in the session's transaction."""

    if not rows:
        return
    conn = await session.connection()
    dialect = conn.dialect
    rows = _driver_values(rows, _processors(table, tuple(columns), dialect))
    if dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        await _copy(conn, table, columns, rows)
    else:
        await conn.exec_driver_sql(_insert_sql(table, tuple(columns), dialect), rows)


@lru_cache(maxsize=256)
def _insert_sql(table: Table, columns: tuple[str, ...], dialect) -> str:
    quote = dialect.identifier_preparer.quote
    if dialect.paramstyle == "qmark":
        marks = ", ".join("?" * len(columns))
    elif dialect.paramstyle == "numeric_dollar":
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:  # format / pyformat drivers
        marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) VALUES ({marks})"


@lru_cache(maxsize=256)
def _processors(table: Table, columns: tuple[str, ...], dialect) -> tuple[tuple[int, Callable], ...]:
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


def _driver_values(rows: list[tuple], processors: tuple[tuple[int, Callable], ...]) -> list[tuple]:
    if not processors:
        return rows
    columns = list(zip(*rows))
    for position, processor in processors:
        converted: dict = {}
        values = columns[position]
        try:
            columns[position] = [
                None if value is None else converted[value] if value in converted
                else converted.setdefault(value, processor(value))
                for value in values
            ]
        except TypeError:  # an unhashable value: convert each one
            columns[position] = [None if value is None else processor(value) for value in values]
    return list(zip(*columns))


async def _copy(conn, table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    import asyncpg

    # The session's transaction begins at its first statement; make sure it has, so
    # the COPY is part of it.
    await conn.exec_driver_sql("SELECT 1")
    raw = await conn.get_raw_connection()
    try:
        await raw.driver_connection.copy_records_to_table(
            table.name, records=rows, columns=list(columns), schema_name=table.schema
        )
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name} ({', '.join(columns)})", None, exc) from exc


async def bulk_execute(session: AsyncSession, statement, rows: list[dict]) -> None:
    """session.execute(statement, rows) for an executemany of many rows (an upsert, an
    UPDATE by key): compiled once, each row's values converted by the statement's own
    bind processors straight into driver tuples."""

    if not rows:
        return
    conn = await session.connection()
    sql, names, processors = _compiled(statement, tuple(rows[0]), conn.dialect)
    values = [tuple(row[name] for name in names) for row in rows]
    await conn.exec_driver_sql(sql, _driver_values(values, processors))


@lru_cache(maxsize=256)
def _compiled(statement, keys: tuple[str, ...], dialect) -> tuple[str, tuple[str, ...], tuple[tuple[int, Callable], ...]]:
    """The statement's SQL for the dialect, the row key of each positional parameter,
    and the (position, processor) of those that need converting."""

    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not compiled.positional:
        raise ValueError(f"bulk_execute needs a positional paramstyle, not {dialect.paramstyle}")
    names = tuple(compiled.binds[name].key for name in compiled.positiontup)
    processors = compiled._bind_processors  # SQLAlchemy's own per-parameter converters
    return compiled.string, names, tuple(
        (position, processors[name]) for position, name in enumerate(compiled.positiontup) if name in processors
    )
