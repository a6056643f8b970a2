"""PostgreSQL's connection pool: a connection that sat idle is pinged before use, and a dead
one is replaced; one in use a moment ago is not pinged (a round trip per transaction). The
connection returned last is taken first, and keeps its prepared statements."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import bindparam, text

from shared.db import database
from shared.db.database import Database
from shared.db.uow import transaction
from tests.support import POSTGRES_URL, _admin_dsn, make_database_url

IN_LIST = text("SELECT 1 WHERE '0' IN :keys").bindparams(bindparam("keys", expanding=True))

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL's pool (VALUECHAIN_TEST_POSTGRES_URL)")


async def _backend_pid(db: Database, *, held_s: float = 0.0) -> int:
    """The backend of the connection a write transaction gets, held `held_s` before it answers."""

    async with transaction(db.writer) as session:
        await asyncio.sleep(held_s)
        return (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "IDLE_PING_S", 0.3)
    url, drop = await make_database_url("pool", tmp_path)
    db = Database.connect(url, service="pool", pool_size=1, max_overflow=0)
    pings = []
    dialect = db.writer_engine.sync_engine.dialect
    real_ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda connection: pings.append(1) or real_ping(connection))
    try:
        first = await _backend_pid(db)
        assert await _backend_pid(db) == first  # the same connection, returned a moment ago
        assert pings == []

        await asyncio.sleep(0.4)
        assert await _backend_pid(db) == first  # idle: pinged, alive, kept
        assert len(pings) == 1

        admin = await asyncpg.connect(_admin_dsn())
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.4)
        replaced = await _backend_pid(db)  # the ping failed: a fresh connection, no error
        assert replaced != first
        assert len(pings) == 2
    finally:
        await db.dispose()
        await drop()


async def test_the_connection_returned_last_is_taken_first_and_keeps_its_statements(tmp_path):
    """After a burst opened several connections, one at a time reuses the same one (LIFO), and
    a statement run again is not prepared again though hundreds of others ran in between: IN
    lists of each length are statements of their own, more than SQLAlchemy's default 100."""

    url, drop = await make_database_url("pool", tmp_path)
    db = Database.connect(url, service="pool", pool_size=4, max_overflow=0)
    try:
        assert len(set(await asyncio.gather(*(_backend_pid(db, held_s=0.2) for _ in range(4))))) == 4
        assert len({await _backend_pid(db) for _ in range(8)}) == 1

        async def statement_names() -> set[str]:
            async with transaction(db.writer) as session:
                rows = await session.execute(text("SELECT name FROM pg_prepared_statements"))
                return {name for (name,) in rows}

        distinct = 300  # IN lists of 1 to 300 keys

        async def every_length() -> None:
            async with transaction(db.writer) as session:
                for n in range(1, distinct + 1):
                    await session.execute(IN_LIST, {"keys": [str(k) for k in range(n)]})

        await every_length()
        first = await statement_names()
        await every_length()
        assert len(first) > distinct
        assert await statement_names() == first  # the second pass prepared nothing anew
    finally:
        await db.dispose()
        await drop()


async def test_a_one_statement_read_runs_without_begin_and_a_read_session_within_one(tmp_path):
    """one_statement_reader: each statement its own transaction (now() is each statement's
    start), no BEGIN or ROLLBACK sent round it; the reader keeps one snapshot throughout.
    Both share the writer's pool, and a connection the first used goes back to transactions."""

    url, drop = await make_database_url("pool", tmp_path)
    db = Database.connect(url, service="pool", pool_size=1, max_overflow=0)
    starts = text("SELECT now()")
    try:
        async with db.one_statement_reader() as session:
            first = (await session.execute(starts)).scalar_one()
            await asyncio.sleep(0.01)
            assert (await session.execute(starts)).scalar_one() > first
        async with db.reader() as session:
            first = (await session.execute(starts)).scalar_one()
            await asyncio.sleep(0.01)
            assert (await session.execute(starts)).scalar_one() == first
        async with transaction(db.writer) as session:  # the same one connection, in a transaction again
            assert (await session.execute(text("SELECT txid_current_if_assigned() IS NULL"))).scalar_one()
            await session.execute(text("SELECT txid_current()"))
            assert (await session.execute(text("SELECT txid_current_if_assigned() IS NOT NULL"))).scalar_one()
    finally:
        await db.dispose()
        await drop()


async def test_a_one_statement_write_is_committed_as_it_runs(tmp_path):
    """one_statement_writer (the relay's marks): on PostgreSQL each statement commits as it
    runs, inside `session.begin()` too, so another connection sees the first write before the
    session ends, and nothing is rolled back after it."""

    url, drop = await make_database_url("pool", tmp_path)
    db = Database.connect(url, service="pool", pool_size=2, max_overflow=0)
    try:
        async with transaction(db.writer) as session:
            await session.execute(text("CREATE TABLE marks (n integer)"))
        with pytest.raises(RuntimeError):
            async with db.one_statement_writer() as session, session.begin():
                await session.execute(text("INSERT INTO marks VALUES (1)"))
                async with db.reader() as other:  # another connection of the pool
                    assert (await other.execute(text("SELECT count(*) FROM marks"))).scalar_one() == 1
                raise RuntimeError("the session's end rolls back nothing")
        async with db.reader() as session:
            assert (await session.execute(text("SELECT count(*) FROM marks"))).scalar_one() == 1
    finally:
        await db.dispose()
        await drop()
