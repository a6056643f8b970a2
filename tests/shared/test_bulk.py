"""bulk_insert stores exactly what session.execute(insert(table), dicts) stores, on the
real database (SQLite, or PostgreSQL in CI's second run), by COPY and by INSERT."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Numeric, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from shared.db.bulk import COPY_FROM_ROWS, bulk_insert
from shared.db.database import Database, UTCDateTime
from shared.db.uow import transaction
from tests.support import database_with_tables

metadata = MetaData()
COLUMNS = ("id", "at", "amount", "note", "body", "n")


def _table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", String(36), primary_key=True),
        Column("at", UTCDateTime, nullable=False),
        Column("amount", Numeric(18, 4, asdecimal=True)),
        Column("note", String(50), unique=True),
        Column("body", LargeBinary, nullable=False),
        Column("n", Integer, nullable=False),
    )


by_bulk, by_execute = _table("by_bulk"), _table("by_execute")


@pytest.fixture
async def db(tmp_path):
    async with database_with_tables("bulk", tmp_path, metadata) as database:
        yield database


def _rows(count: int, start: int = 0) -> list[tuple]:
    paris = timezone(timedelta(hours=1))
    base = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=paris)
    return [
        (
            f"id-{start + i:05d}",
            base + timedelta(days=i % 7),
            None if i % 5 == 0 else Decimal(f"{i}.{i % 100:02d}"),
            None if i % 3 else f"note-{start + i}",
            f"body {i} \x00\xff".encode("latin-1"),
            i,
        )
        for i in range(count)
    ]


async def _stored(database: Database, table: Table) -> list[tuple]:
    async with database.reader() as session:
        return [tuple(row) for row in await session.execute(select(table).order_by(table.c.id))]


async def _raw(database: Database, table: Table) -> list[tuple]:
    """The values as the database keeps them (SQLite keeps no types of its own)."""

    async with database.writer() as session:
        conn = await session.connection()
        return [tuple(row) for row in await conn.exec_driver_sql(f"SELECT * FROM {table.name} ORDER BY id")]


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])  # INSERT, and COPY on PostgreSQL
async def test_bulk_insert_stores_what_execute_stores(db, count):
    rows = _rows(count)
    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, rows)
        await session.execute(insert(by_execute), [dict(zip(COLUMNS, row)) for row in rows])
    bulk, executed = await _stored(db, by_bulk), await _stored(db, by_execute)
    assert len(bulk) == count and bulk == executed
    assert await _raw(db, by_bulk) == await _raw(db, by_execute)
    assert bulk[1][1] == rows[1][1] and bulk[1][1].tzinfo is not None  # the same instant, read back in UTC


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])
async def test_a_column_with_one_value_in_every_row_is_stored_as_execute_stores_it(db, count):
    # One instant in every row, written in two time zones (equal, so converted once), and one
    # amount written as 1.5 and 1.50 (equal, but not the same text: converted row by row).
    instant = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    rows = [
        (
            row[0],
            instant if i % 2 else instant.astimezone(timezone(timedelta(hours=-5))),
            Decimal("1.5") if i % 2 else Decimal("1.50"),
            *row[3:],
        )
        for i, row in enumerate(_rows(count))
    ]
    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, rows)
        await session.execute(insert(by_execute), [dict(zip(COLUMNS, row)) for row in rows])
    assert await _raw(db, by_bulk) == await _raw(db, by_execute)
    assert {row[1] for row in await _stored(db, by_bulk)} == {instant}


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])
async def test_a_unique_clash_is_an_integrity_error_and_nothing_is_kept(db, count):
    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, _rows(1, start=90_000))
    clashing = _rows(count) + [("id-99999", datetime.now(UTC), None, "note-90000", b"", 0)]
    with pytest.raises(IntegrityError):
        async with transaction(db.writer) as session:
            await session.execute(insert(by_execute), [dict(zip(COLUMNS, row)) for row in _rows(2)])
            await bulk_insert(session, by_bulk, COLUMNS, clashing)
    async with db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(by_bulk)) == 1
        assert await session.scalar(select(func.count()).select_from(by_execute)) == 0
    async with transaction(db.writer) as session:  # the writer is usable afterwards
        await bulk_insert(session, by_bulk, COLUMNS, _rows(count))
    assert len(await _stored(db, by_bulk)) == count + 1


async def test_bulk_execute_runs_an_upsert_as_execute_runs_it(db):
    from sqlalchemy import bindparam, update

    from shared.db.bulk import bulk_execute
    from shared.db.database import dialect_insert

    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, _rows(4))
        await bulk_insert(session, by_execute, COLUMNS, _rows(4))
    dialect = db.writer_engine.dialect.name
    changes = [dict(zip(COLUMNS, row)) for row in _rows(COPY_FROM_ROWS + 5, start=2)]
    for row in changes:
        row["n"] += 1000
    counts = [{"key": f"id-{i:05d}", "plus": i} for i in range(3)]

    def execute(session, statement, rows):
        return session.execute(statement, rows)

    for table, run in ((by_bulk, bulk_execute), (by_execute, execute)):
        upsert = dialect_insert(table, dialect)
        upsert = upsert.on_conflict_do_update(
            index_elements=["id"], set_={"n": table.c.n + upsert.excluded.n, "at": upsert.excluded.at}
        )
        add = update(table).where(table.c.id == bindparam("key")).values(n=table.c.n + bindparam("plus"))
        async with transaction(db.writer) as session:
            await run(session, upsert, changes)
            await run(session, add, counts)
    bulk = await _stored(db, by_bulk)
    assert bulk == await _stored(db, by_execute) and len(bulk) == COPY_FROM_ROWS + 7
    assert [row[5] for row in bulk[:4]] == [0, 1 + 1, 2 + 1000 + 2, 3 + 1000 + 1]


async def test_fetch_all_reads_what_execute_reads_with_its_parameters_converted(db):
    """The relay's read: a converted parameter (a time), an array (PostgreSQL's ANY) and
    the statement's own LIMIT, run on the driver on PostgreSQL, give execute's rows."""

    from sqlalchemy import bindparam

    from shared.db.bulk import fetch_all, one_of

    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, _rows(20))
    dialect = db.writer_engine.dialect.name
    since = _rows(3)[2][1]  # rows 2-6 of each week are on or after this time
    statement = (
        select(by_bulk.c.n, by_bulk.c.id, by_bulk.c.body)
        .where(by_bulk.c.at >= bindparam("since"), one_of(by_bulk.c.n, dialect, "ns"))
        .order_by(by_bulk.c.n)
        .limit(4)
    )
    params = {"since": since, "ns": [1, 2, 3, 5, 9, 10, 11, 16, 17]}
    for make in (db.one_statement_reader, db.reader, db.writer):
        async with make() as session:
            fetched = [tuple(row) for row in await fetch_all(session, statement, params)]
            executed = [tuple(row) for row in (await session.execute(statement, params)).all()]
        assert fetched == executed == [(n, f"id-{n:05d}", _rows(20)[n][4]) for n in (2, 3, 5, 9)]


def _add_n_on_conflict(statement):
    return statement.on_conflict_do_update(
        index_elements=["id"], set_={"n": statement.table.c.n + statement.excluded.n, "at": statement.excluded.at}
    )


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])  # executemany, and staged on PostgreSQL
async def test_bulk_upsert_merges_rows_as_an_executed_upsert_does_even_twice_in_a_transaction(db, count):
    from shared.db.bulk import bulk_upsert
    from shared.db.database import dialect_insert

    async with transaction(db.writer) as session:
        await bulk_insert(session, by_bulk, COLUMNS, _rows(5))
        await bulk_insert(session, by_execute, COLUMNS, _rows(5))
    first = [dict(zip(COLUMNS, row)) for row in _rows(count, start=3)]
    second = [{**row, "n": 7} for row in first[: count // 2 + 1]]
    async with transaction(db.writer) as session:
        for rows in (first, second):  # the second stages into the same temporary table
            await bulk_upsert(session, by_bulk, COLUMNS, rows, _add_n_on_conflict)
            upsert = _add_n_on_conflict(dialect_insert(by_execute, db.writer_engine.dialect.name))
            await session.execute(upsert, rows)
    bulk = await _stored(db, by_bulk)
    assert bulk == await _stored(db, by_execute) and len(bulk) == count + 3
    assert [row[5] for row in bulk[2:5]] == [2, 3 + 0 + 7, 4 + 1 + 7]


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])
async def test_a_staged_upsert_that_opens_its_transaction_rolls_back_with_it(db, count):
    # On PostgreSQL the staging table's CREATE is the transaction's first statement and
    # the COPY into it must be part of that transaction, as must the upsert.
    from shared.db.bulk import bulk_upsert

    rows = [dict(zip(COLUMNS, row)) for row in _rows(count)]
    with pytest.raises(RuntimeError):
        async with transaction(db.writer) as session:
            await bulk_upsert(session, by_bulk, COLUMNS, rows, _add_n_on_conflict)
            raise RuntimeError("the caller fails after the upsert")
    assert await _stored(db, by_bulk) == []
    async with transaction(db.writer) as session:  # staging works again after the rollback
        await bulk_upsert(session, by_bulk, COLUMNS, rows, _add_n_on_conflict)
    assert len(await _stored(db, by_bulk)) == count
