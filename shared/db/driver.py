"""Hot statements straight on asyncpg, under the session's own transaction (PostgreSQL).

A statement through SQLAlchemy's AsyncSession, or its connection's `exec_driver_sql`, cost
this process about 135 µs of CPU on PostgreSQL, where the same prepared statement on the
asyncpg connection cost 47 (bench/pg_round_trip.py): the greenlet hop, the execution
context, the cursor adapter and the result object, around a round trip that is the same.
The bulk helpers' small writes (shared/db/bulk.py; a purchase makes five of them in identify
alone) go to the driver here instead, their SQL and parameter conversion made once by
SQLAlchemy. Other statements keep the session. SQLite keeps SQLAlchemy's path: its
statements already run inline.

`writes_together` goes one step further for writes that do not depend on each other: the
bulk helpers' writes in its block go to the server as one statement (identify's purchase
sends its transaction, purchase count and purchase day so: one round trip, not three).

The session's transaction stays SQLAlchemy's: `pg_connection` sends its BEGIN first if no
statement has, so these statements commit and roll back with the rest. An error is raised
as SQLAlchemy's (IntegrityError for a broken constraint, DBAPIError otherwise), so callers
handle it as they would one from `session.execute`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db import unnest
from shared.db.database import dialect_name

if TYPE_CHECKING:
    import asyncpg


async def pg_connection(session: AsyncSession | AsyncConnection) -> asyncpg.Connection | None:
    """The asyncpg connection of the session's transaction, its BEGIN sent (none is sent
    in autocommit); None on SQLite."""

    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    if conn.dialect.name != "postgresql":
        return None
    adapted = await _adapter(conn)
    # SQLAlchemy's asyncpg adapter begins the transaction lazily, at its cursor's first
    # statement; a statement sent past the adapter must begin it the same way.
    if adapted._transaction is None:
        await adapted._start_transaction()
    driver: asyncpg.Connection = adapted._connection
    return driver


async def _adapter(conn: AsyncConnection) -> Any:
    """SQLAlchemy's asyncpg adapter of the connection: its `_connection` is asyncpg's, and its
    `_transaction` is None until a statement has begun the transaction."""

    adapted = (await conn.get_raw_connection()).dbapi_connection
    assert adapted is not None, "a connection checked out of the pool is open"
    return adapted


_CONNECTIONS = "driver.connections"  # session.info: (its transaction, connection, asyncpg connection)


async def connections(session: AsyncSession) -> tuple[AsyncConnection, asyncpg.Connection | None]:
    """The session's connection and `pg_connection` of it, found once per transaction of the
    session: each costs a greenlet hop through SQLAlchemy, and the bulk helpers ask for them
    at every statement (a purchase's lock, writes and outbox rows; each micro-batch's claim
    and alias lookup). Within one transaction the session keeps one connection, and its
    BEGIN, once sent, stands until that transaction ends."""

    block = _together.get()
    if block is not None and block[0] is session and block[2] is not None:
        return block[2]  # a `writes_alone` block's: its BEGIN not sent, and not kept for later
    sync = session.sync_session
    transaction = sync.get_transaction()
    found = sync.info.get(_CONNECTIONS)
    if found is not None and transaction is not None and found[0] is transaction:
        return found[1], found[2]
    conn = await session.connection()
    driver = await pg_connection(conn)
    sync.info[_CONNECTIONS] = (sync.get_transaction(), conn, driver)
    return conn, driver


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

    one_statement = unnest.one_statement(sql, rows)
    async with as_sqlalchemy_errors(sql):
        if one_statement is not None:
            await driver.execute(one_statement.sql, *one_statement.arrays(rows))
        else:
            await driver.executemany(sql, rows)


async def execute(driver: asyncpg.Connection, sql: str, *args: Any) -> str:
    """Run a statement that returns no rows; its status ("UPDATE 3")."""

    async with as_sqlalchemy_errors(sql):
        return await driver.execute(sql, *args)


# --- writes sent together -----------------------------------------------------------------

# The block's session, its gathered writes (table, SQL, arguments) and, in a `writes_alone`
# block, the connection (SQLAlchemy's and asyncpg's) its statement goes out on.
_Gathered = list[tuple[str, str, tuple[Any, ...]]]
_together: ContextVar[tuple[AsyncSession, _Gathered, tuple[AsyncConnection, asyncpg.Connection] | None] | None] = (
    ContextVar("writes_together", default=None)
)
_PLACEHOLDER = re.compile(r"\$(\d+)")
_WRITTEN = re.compile(r"(?:INSERT INTO|UPDATE) (\S+)")


@asynccontextmanager
async def writes_together(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, the bulk helpers' small writes in this block go to the server as one
    statement when it ends (data-modifying CTEs: `WITH w1 AS (INSERT …), w2 AS (UPDATE …)
    SELECT 1`), one round trip instead of one each. Each round trip cost a purchase about
    200 µs of CPU, client and server (docs/benchmarks.md, "Stop 21").

    For writes that do not depend on each other only: the statements of one WITH all see
    the snapshot from before it, none sees another's rows. So nothing in the block may read
    what another write in it wrote, and its errors (a broken constraint) are raised at the
    end of the block. Two writes to one table are not put together (one statement may not
    change a row twice): the second sends those gathered so far first. SQLite, and writes
    too big for one statement (COPY), run as they come."""

    if _together.get() is not None or dialect_name(session) != "postgresql":
        yield
        return
    gathered: _Gathered = []
    token = _together.set((session, gathered, None))
    try:
        yield
    finally:
        _together.reset(token)
    await _send(session, gathered)  # not reached when the block raised: the transaction rolls back


class NotAlone(Exception):
    """A write in a `writes_alone` block that cannot be part of its one statement."""


@asynccontextmanager
async def writes_alone(session: AsyncSession) -> AsyncIterator[Alone | None]:
    """On PostgreSQL, before the session's transaction has sent anything: gather the bulk
    helpers' writes of the block, as `writes_together` does, for one statement that runs
    in autocommit, with no BEGIN and no COMMIT (identify's purchase: one round trip, not
    four). The caller sends it with parts of its own before the writes (`Alone.send`).

    Yields None where that cannot be: SQLite, or a transaction already begun. Only writes
    that can wait for the statement belong in the block: one that cannot, or a second
    write to a table, raises NotAlone (the caller takes its locked path instead)."""

    if _together.get() is not None or dialect_name(session) != "postgresql":
        yield None
        return
    conn = await session.connection()
    adapted = await _adapter(conn)
    if adapted._transaction is not None:  # a statement of this transaction went out before
        yield None
        return
    alone = Alone(adapted._connection)
    token = _together.set((session, alone.gathered, (conn, alone.driver)))
    try:
        yield alone
    finally:
        _together.reset(token)


class Alone:
    """The writes of a `writes_alone` block and the statement that sends them."""

    def __init__(self, driver: asyncpg.Connection):
        self.driver = driver
        self.gathered: _Gathered = []

    async def send(self, parts: list[tuple[str, str, tuple[Any, ...]]], final: str) -> list[Any]:
        """`WITH` the `parts` (name, SQL, arguments), then the gathered writes, then `final`
        (a SELECT of the parts, with no parameters of its own): its rows. Errors are raised as
        SQLAlchemy's (IntegrityError for a broken constraint), nothing of the statement kept."""

        sql, values = with_parts([*parts, *_named(self.gathered)], final)
        async with as_sqlalchemy_errors(sql):
            rows: list[Any] = await self.driver.fetch(sql, *values)
        return rows


async def gather_write(session: AsyncSession, sql: str, rows: list[tuple[Any, ...]]) -> bool:
    """Keep this write (rows for one statement) for the end of a `writes_together` block of
    the session; False when there is none or the write cannot wait (run it now)."""

    block = _together.get()
    if block is None or block[0] is not session:
        return False
    gathered = block[1]
    one: tuple[str, tuple[Any, ...]] | None = None
    if len(rows) == 1:
        one = (sql, rows[0])
    elif (plan := unnest.one_statement(sql, rows)) is not None:
        one = (plan.sql, tuple(plan.arrays(rows)))
    written = _WRITTEN.match(one[0]) if one is not None else None
    if one is None or written is None or any(table == written[1] for table, _, _ in gathered):
        await send_gathered(session)  # what this write may read goes first
        if one is None or written is None:
            return False
    gathered.append((written[1], *one))
    return True


async def _send(session: AsyncSession, gathered: list[tuple[str, str, tuple[Any, ...]]]) -> None:
    if not gathered:
        return
    writes, gathered[:] = list(gathered), []
    _, driver = await connections(session)
    assert driver is not None, "writes are gathered on PostgreSQL only"
    if len(writes) == 1:
        _, sql, args = writes[0]
        await execute(driver, sql, *args)
        return
    sql, values = with_parts(_named(writes), "SELECT 1")
    await execute(driver, sql, *values)


def _named(gathered: _Gathered) -> list[tuple[str, str, tuple[Any, ...]]]:
    """The gathered writes as parts of a WITH: w1, w2, …"""

    return [(f"w{n}", sql, args) for n, (_, sql, args) in enumerate(gathered, 1)]


def with_parts(parts: list[tuple[str, str, tuple[Any, ...]]], final: str) -> tuple[str, list[Any]]:
    """`WITH name AS (SQL), … final` and its arguments, each part's parameters numbered on
    from those of the parts before it."""

    named: list[str] = []
    values: list[Any] = []
    for name, sql, args in parts:
        named.append(f"{name} AS ({_renumbered(sql, len(values))})")
        values.extend(args)
    return f"WITH {', '.join(named)} {final}", values


def _renumbered(sql: str, offset: int) -> str:
    """The statement with its parameters $1… numbered from offset + 1 (it follows others)."""

    return _PLACEHOLDER.sub(lambda match: f"${int(match[1]) + offset}", sql)


def waits_together(session: AsyncSession, table: str) -> bool:
    """Whether a write to `table` waits in the session's `writes_together` block (sent with
    the block's statement; what follows in the block does not see it)."""

    block = _together.get()
    return block is not None and block[0] is session and any(written == table for written, _, _ in block[1])


async def send_gathered(session: AsyncSession) -> None:
    """Send the writes gathered so far in the session's `writes_together` block, for what
    follows to read them (none outside such a block)."""

    block = _together.get()
    if block is not None and block[0] is session:
        if block[2] is not None:
            raise NotAlone("a write that cannot wait for the block's one statement, or reads what it writes")
        await _send(session, block[1])
