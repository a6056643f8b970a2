"""`writes_together` (shared/db/driver.py): on PostgreSQL the bulk helpers' writes in the
block reach the server as one statement. Each row keeps `statement_timestamp()` as it is
written, the same for every write of one statement and later for a later one, so the
tests see how many statements the writes took on the real database. On SQLite the block
changes nothing, which the same tests check there by the rows alone."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError

from shared.db.bulk import bulk_execute, bulk_insert, bulk_upsert
from shared.db.database import Database
from shared.db.driver import send_gathered, writes_together
from shared.db.uow import transaction
from tests.support import POSTGRES_URL, database_with_tables

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", String(20), primary_key=True),
        Column("n", Integer, nullable=False),
        # SQLite has no statement_timestamp(); its rows keep NULL (one statement each there anyway).
        Column("stamp", DateTime(timezone=True)),
    )


orders, counts, days = _table("orders"), _table("counts"), _table("days")
on_postgres = POSTGRES_URL is not None


@pytest.fixture
async def db(tmp_path):
    async with database_with_tables("together", tmp_path, metadata) as database:
        if on_postgres:
            async with database.writer_engine.begin() as conn:
                for table in (orders, counts, days):
                    await conn.execute(text(f"ALTER TABLE {table.name} ALTER stamp SET DEFAULT statement_timestamp()"))
        async with transaction(database.writer) as session:
            await bulk_insert(session, counts, ("id", "n"), [("c1", 10), ("c2", 20)])
        yield database


_add = update(counts).where(counts.c.id == bindparam("key")).values(n=counts.c.n + bindparam("plus"))


def _add_n(statement):
    return statement.on_conflict_do_update(index_elements=["id"], set_={"n": days.c.n + statement.excluded.n})


async def _rows(db: Database) -> dict[str, tuple]:
    async with db.reader() as session:
        found = {}
        for table in (orders, counts, days):
            for row in await session.execute(select(table)):
                found[f"{table.name}.{row.id}"] = (row.n, row.stamp)
        return found


def _statements(rows: dict[str, tuple], *keys: str) -> int:
    return len({rows[key][1] for key in keys})


async def test_independent_writes_in_a_block_are_one_statement(db):
    async with transaction(db.writer) as session, writes_together(session):
        await bulk_insert(session, orders, ("id", "n"), [("o1", 1)])
        await bulk_execute(session, _add, [{"key": "c1", "plus": 5}])
        await bulk_upsert(session, days, ("id", "n"), [{"id": "d1", "n": 2}, {"id": "d2", "n": 3}], _add_n)
    rows = await _rows(db)
    assert {key: n for key, (n, _) in rows.items()} == {
        "orders.o1": 1,
        "counts.c1": 15,
        "counts.c2": 20,
        "days.d1": 2,
        "days.d2": 3,
    }
    if on_postgres:
        assert _statements(rows, "orders.o1", "days.d1", "days.d2") == 1


async def test_what_is_gathered_is_sent_before_a_write_that_reads_it_and_a_second_write_to_a_table(db):
    async with transaction(db.writer) as session, writes_together(session):
        await bulk_insert(session, orders, ("id", "n"), [("o1", 1)])
        await bulk_upsert(session, days, ("id", "n"), [{"id": "d1", "n": 2}], _add_n)
        await send_gathered(session)  # what follows reads d1
        await bulk_upsert(session, days, ("id", "n"), [{"id": "d1", "n": 5}], _add_n)
        await bulk_insert(session, orders, ("id", "n"), [("o2", 3)])  # goes with the upsert of d1
        await bulk_upsert(session, days, ("id", "n"), [{"id": "d2", "n": 7}], _add_n)  # days again: after them
    rows = await _rows(db)
    assert (rows["days.d1"][0], rows["orders.o2"][0], rows["days.d2"][0]) == (2 + 5, 3, 7)
    if on_postgres:
        assert rows["orders.o1"][1] < rows["orders.o2"][1] < rows["days.d2"][1]


async def test_a_block_that_fails_writes_nothing_and_a_broken_constraint_is_an_integrity_error(db):
    with pytest.raises(RuntimeError):
        async with transaction(db.writer) as session, writes_together(session):
            await bulk_insert(session, orders, ("id", "n"), [("o1", 1)])
            raise RuntimeError("the caller fails inside the block")
    with pytest.raises(IntegrityError):
        async with transaction(db.writer) as session, writes_together(session):
            await bulk_execute(session, _add, [{"key": "c1", "plus": 5}])
            await bulk_insert(session, orders, ("id", "n"), [("o1", 1), ("o1", 2)])
    rows = await _rows(db)
    assert {key for key in rows if key.startswith("orders")} == set() and rows["counts.c1"][0] == 10
    async with transaction(db.writer) as session, writes_together(session):  # usable afterwards
        await bulk_insert(session, orders, ("id", "n"), [("o1", 1)])
    assert (await _rows(db))["orders.o1"][0] == 1


async def test_a_sessions_connections_are_found_once_per_transaction(db):
    """`connections` answers from what it found at the transaction's first statement, and
    finds them again in the session's next transaction (its connection may be another)."""

    from shared.db.driver import connections

    async with db.writer() as session:
        async with session.begin():
            conn, driver = await connections(session)
            assert (conn, driver) == await connections(session)
            assert conn is await session.connection()
            assert (driver is not None) == on_postgres
            if driver is not None:
                assert driver.is_in_transaction()  # its BEGIN sent, so statements on it commit with the session
            await bulk_insert(session, orders, ("id", "n"), [("o1", 1)])
        async with session.begin():
            again, _ = await connections(session)
            assert again is await session.connection()
            await bulk_insert(session, orders, ("id", "n"), [("o2", 2)])
        async with session.begin():
            await bulk_insert(session, orders, ("id", "n"), [("o3", 3)])
            await session.rollback()  # what the cached connection wrote goes with its transaction
    assert sorted(key for key in await _rows(db) if key.startswith("orders.")) == ["orders.o1", "orders.o2"]
