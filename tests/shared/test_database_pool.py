"""PostgreSQL's connection pool: a connection that sat idle is pinged before use, and a dead
one is replaced; one in use a moment ago is not pinged (a round trip per transaction)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from shared.db import database
from shared.db.database import Database
from shared.db.uow import transaction
from tests.support import POSTGRES_URL, _admin_dsn, make_database_url

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL's pool (VALUECHAIN_TEST_POSTGRES_URL)")


async def _backend_pid(db: Database) -> int:
    async with transaction(db.writer) as session:
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
