"""A SQLite connection for SQLAlchemy's aiosqlite dialect that runs statements inline.

aiosqlite runs every call — cursor, execute, fetch, close, commit — on a worker
thread and hands the result back through the event loop: three or four thread hops
per statement, each waking the loop and contending for the GIL. A write of one
purchase in identify made about forty of them. A small SQLite statement takes tens
of microseconds, less than the hop, so the service's writer runs them inline
instead, with two precautions:

- **Never wait for the file lock on the event loop.** The connection's busy timeout
  is 0; a statement refused with SQLITE_BUSY (another connection holds the write
  lock, e.g. a second process, or a second engine in this one whose holder can only
  finish if the loop runs) did nothing, so it is retried after an asyncio sleep,
  with back-off, until `busy_timeout_s`. With `BEGIN IMMEDIATE`, only the BEGIN
  can be refused: once it holds the lock, the transaction's statements cannot be.
- **Bulk work goes to a thread.** An executemany of more than `INLINE_MANY` rows
  runs on the default executor, as aiosqlite would, so the loop keeps serving
  while SQLite works (sqlite3 releases the GIL inside SQLite); so does every
  statement and commit of a task that called `statements_on_threads()` (imports,
  refits: their many large statements held the loop up to ~95 ms at a time). The
  dialect's mutex keeps the connection to one caller.

The objects mimic just what SQLAlchemy's aiosqlite adapter calls.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from operator import attrgetter
from typing import Any

INLINE_MANY = 200

_on_threads: ContextVar[bool] = ContextVar("sqlite_statements_on_threads", default=False)


def statements_on_threads() -> None:
    """From here on, this task's (and its children's) SQLite writes run on threads."""

    _on_threads.set(True)


def _busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def _on_thread(call: Callable[[], Any]) -> Any:
    running = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # The statement runs on in its thread: let it end before the caller's
        # rollback touches the connection.
        await asyncio.wait([running])
        raise


async def _retrying(call: Callable[[], Any], busy_timeout_s: float, *, offload: bool = False) -> Any:
    delay = 0.0005
    deadline = None
    while True:
        try:
            if offload:
                return await _on_thread(call)
            return call()
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            now = time.monotonic()
            deadline = deadline or now + busy_timeout_s
            if now >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class InlineCursor:
    def __init__(self, connection: InlineConnection):
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await _retrying(
            lambda: self._cursor.execute(sql, parameters),
            self._connection.busy_timeout_s,
            offload=_on_threads.get(),
        )
        return self

    async def executemany(self, sql: str, seq_of_parameters: Any) -> InlineCursor:
        if not isinstance(seq_of_parameters, (list, tuple)):
            seq_of_parameters = list(seq_of_parameters)
        await _retrying(
            lambda: self._cursor.executemany(sql, seq_of_parameters),
            self._connection.busy_timeout_s,
            offload=len(seq_of_parameters) > INLINE_MANY or _on_threads.get(),
        )
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        if _on_threads.get():
            rows: list[Any] = await _on_thread(self._cursor.fetchall)
            return rows
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    # What SQLAlchemy reads of a cursor after a statement, straight from sqlite3's.
    description = property(attrgetter("_cursor.description"))
    rowcount = property(attrgetter("_cursor.rowcount"))
    lastrowid = property(attrgetter("_cursor.lastrowid"))

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediate:
    """Stands in for aiosqlite's request queue: SQLAlchemy's isolation_level setter
    puts (future, function) on it; the function runs at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(exc)


class InlineConnection:
    def __init__(self, conn: sqlite3.Connection, busy_timeout_s: float):
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # the adapter checks it is still open
        self._tx = _Immediate()
        self.busy_timeout_s = busy_timeout_s

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def executemany(self, sql: str, seq_of_parameters: Any) -> InlineCursor:
        return await self.cursor().executemany(sql, seq_of_parameters)

    async def commit(self) -> None:
        await _retrying(self._conn.commit, self.busy_timeout_s, offload=_on_threads.get())

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is None:
            return
        self._connection = None
        # SQLAlchemy closes a connection it invalidated (a write cancelled mid-way)
        # without a rollback first; with a cursor still unfinalized, sqlite3's close
        # only marks the connection a zombie, which would keep the write lock until
        # the cursor is collected. Roll back first, so the lock goes now.
        try:
            if self._conn.in_transaction:
                self._conn.rollback()
        finally:
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


def inline_creator(path: str, *, busy_timeout_s: float = 30.0) -> Callable[[], Awaitable[InlineConnection]]:
    """An `async_creator` for create_async_engine: a connection to the file at path."""

    async def connect() -> InlineConnection:
        # timeout=0: the busy wait happens in _retrying, off the event loop.
        conn = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
        return InlineConnection(conn, busy_timeout_s)

    return connect
