"""Hot statements straight on asyncpg, under the session's own transaction (PostgreSQL).

A statement through SQLAlchemy's AsyncSession, or its connection's `exec_driver_sql`, cost
this process about 135 µs of CPU on PostgreSQL, where the same prepared statement on the
asyncpg connection cost 47 (bench/pg_round_trip.py): the greenlet hop, the execution
context, the cursor adapter and the result object, around a round trip that is the same.
The statements every purchase runs a few of (the bulk helpers' small executemanys, the
inbox claim, the outbox relay's read and mark, identify's customer lock) go to the driver
here instead, with their SQL and parameter conversion made once by SQLAlchemy
(shared/db/bulk.py). SQLite keeps SQLAlchemy's path: its statements already run inline.

The session's transaction stays SQLAlchemy's: `pg_connection` sends its BEGIN first if no
statement has, so these statements commit and roll back with the rest. An error is raised
as SQLAlchemy's (IntegrityError for a broken constraint, DBAPIError otherwise), so callers
handle it as they would one from `session.execute`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import unnest

if TYPE_CHECKING:
    import asyncpg


async def pg_connection(session: AsyncSession | AsyncConnection) -> asyncpg.Connection | None:
    """The asyncpg connection of the session's transaction, its BEGIN sent (none is sent
    in autocommit); None on SQLite."""

    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    if conn.dialect.name != "postgresql":
        return None
    adapted = (await conn.get_raw_connection()).dbapi_connection
    assert adapted is not None, "a connection checked out of the pool is open"
    # SQLAlchemy's asyncpg adapter begins the transaction lazily, at its cursor's first
    # statement; a statement sent past the adapter must begin it the same way.
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver: asyncpg.Connection = adapted._connection
    return driver


@asynccontextmanager
async def as_sqlalchemy_errors(sql: str) -> AsyncIterator[None]:
    import asyncpg

    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, None, exc) from exc
    except asyncpg.PostgresError as exc:
        raise DBAPIError(sql, None, exc) from exc


async def executemany(driver: asyncpg.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """The statement once per row: as one statement where shared/db/unnest.py has its form."""

    one_statement = unnest.plan(sql) if len(rows) > 1 else None
    async with as_sqlalchemy_errors(sql):
        if one_statement is not None and one_statement.fits(rows):
            await driver.execute(one_statement.sql, *one_statement.arrays(rows))
        else:
            await driver.executemany(sql, rows)


async def fetch(driver: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with as_sqlalchemy_errors(sql):
        return await driver.fetch(sql, *args)


async def execute(driver: asyncpg.Connection, sql: str, *args: Any) -> str:
    """Run a statement that returns no rows; its status ("UPDATE 3")."""

    async with as_sqlalchemy_errors(sql):
        return await driver.execute(sql, *args)
