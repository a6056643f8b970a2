"""Database plumbing shared by every service: engines, declarative bases, sessions.

SQLite (the embedded default) and PostgreSQL (production) run the same code. On
SQLite, write transactions start with BEGIN IMMEDIATE so that two writers queue
for the lock instead of failing with a lock-upgrade deadlock; the writer runs its
statements inline (shared/db/sqlite_inline.py) and waits for the lock in asyncio.
Reads use a second, synchronous engine in autocommit mode, also inline; they never
queue behind writers (WAL lets them run alongside).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Executable, Result, ScalarResult, Table, create_engine, event
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.types import DateTime, TypeDecorator

from shared.db import unnest
from shared.db.sqlite_inline import inline_creator

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _configure_sqlite(engine: Engine, *, begin: str | None, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed, not left in free pages and cells: an
        # erased customer's data must not stay in the file (docs/privacy.md).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)


def _enable_wal(url: str) -> None:
    """Switch the file to WAL once, before any pooled connection opens.

    WAL is a property of the file. Letting every new connection switch it made a
    reader and a writer opening together on a fresh file race for the lock
    ("database is locked").
    """

    path = make_url(url).database
    if not path or path == ":memory:":
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _sqlite_writer(url: str) -> AsyncEngine:
    # One writer connection per process: SQLite admits one writer at a time anyway,
    # and queueing for the pool's connection in asyncio hands it over the moment it
    # is free, where several connections contending for the file lock wait in
    # SQLite's busy handler, which sleeps in steps of milliseconds.
    # Its statements run inline on the event loop (see shared/db/sqlite_inline.py), and
    # it waits for another connection's write lock in asyncio, never in SQLite.
    engine = create_async_engine(
        url,
        # No database in the URL is an in-memory one, as SQLAlchemy's own sqlite dialect reads it.
        async_creator=inline_creator(make_url(url).database or ":memory:", busy_timeout_s=30.0),
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
    )
    _configure_sqlite(engine.sync_engine, begin="BEGIN IMMEDIATE", busy_timeout_ms=0)
    return engine


def _sqlite_reader(url: str) -> Engine:
    sync_url = make_url(url).set(drivername="sqlite")
    # Reads run in autocommit: each statement sees one consistent snapshot (WAL),
    # and a connection needs no rollback when it goes back to the pool. Code that
    # needs several statements to agree reads inside a write transaction.
    engine = create_engine(
        sync_url,
        connect_args={"check_same_thread": False},
        pool_size=5,
        max_overflow=5,
        pool_reset_on_return=None,
    )
    _configure_sqlite(engine, begin=None, busy_timeout_ms=1000)
    return engine


class InlineSession:
    """The read-only part of AsyncSession's API over synchronous SQLite, run inline.

    aiosqlite hands every call to a worker thread and back, which capped one-row
    reads at about 1,000/s on our 2-core machine; a synchronous SQLite read of an
    indexed row takes tens of microseconds (in WAL mode it never waits for a
    writer), so running it inline is faster and cheaper than the hop. Writes keep
    the async engine. Core statements skip the ORM session entirely.
    """

    def __init__(self, engine: Engine, info: dict[str, Any]):
        self.engine = engine
        self.info = info
        self._connection: Connection | None = None
        self._session: Session | None = None

    def _conn(self) -> Connection:
        if self._connection is None:
            self._connection = self.engine.connect()
        return self._connection

    @property
    def sync_session(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self._conn(), info=self.info, expire_on_commit=False)
        return self._session

    async def execute(self, statement: Executable, params: Any = None, **kw: Any) -> Result[Any]:
        if kw or statement._propagate_attrs.get("compile_state_plugin") == "orm":
            return self.sync_session.execute(statement, params, **kw)
        return self._conn().execute(statement, params)

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:
        return self.sync_session.get(entity, ident, **kw)

    async def scalar(self, statement: Executable, params: Any = None, **kw: Any) -> Any:
        return (await self.execute(statement, params, **kw)).scalar()

    async def scalars(self, statement: Executable, params: Any = None, **kw: Any) -> ScalarResult[Any]:
        return (await self.execute(statement, params, **kw)).scalars()

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._connection is not None:
            self._connection.close()
        self._session = self._connection = None

    async def __aenter__(self) -> InlineSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class InlineSessionMaker:
    def __init__(self, engine: Engine, info: dict[str, Any]):
        self.engine = engine
        self.kw = {"info": info}

    def __call__(self) -> InlineSession:
        return InlineSession(self.engine, self.kw["info"])


# A pooled PostgreSQL connection idle this long is pinged before it is handed out.
IDLE_PING_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """`pool_pre_ping`, for connections that sat idle: a dead one (the server restarted) is
    replaced before a request gets it. SQLAlchemy's own pre-ping pings at every checkout,
    a round trip per transaction that cost about 9% of the suite's CPU per purchase
    (docs/benchmarks.md); a connection returned less than IDLE_PING_S ago was working then.
    A connection that breaks while in use fails its statement, and SQLAlchemy then replaces
    every connection of the pool older than the failure, as it would with pre-ping on."""

    @event.listens_for(engine.pool, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < IDLE_PING_S:
            return  # just opened, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool opens a fresh connection
            raise DisconnectionError(f"idle connection failed its ping: {exc!r}") from exc


def _executemany_as_one_statement(engine: Engine) -> None:
    """An INSERT executemany of SQLAlchemy's (`session.execute(insert, rows)`) as one statement
    of arrays, where shared/db/unnest.py has its form: one execution on the server, not one
    per row."""

    @event.listens_for(engine, "do_executemany")
    def _many(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
        one_statement = unnest.one_statement(statement, parameters)
        if one_statement is None:
            return False  # SQLAlchemy's own executemany
        cursor.execute(one_statement.sql, one_statement.arrays(parameters))
        return True


STATEMENT_CACHE = 1000


def _with_statement_cache(url: str) -> str | URL:
    """asyncpg runs every statement prepared, and prepares each distinct one once per
    connection: a round trip, and a parse and plan on the server. IN lists of each length and
    multi-row inserts of each size are distinct statements, hundreds of them in a service,
    where SQLAlchemy's cache keeps 100 per connection. A URL that sets its own size keeps it."""

    parsed = make_url(url)
    if not parsed.drivername.endswith("+asyncpg") or "prepared_statement_cache_size" in parsed.query:
        return url
    return parsed.update_query_dict({"prepared_statement_cache_size": str(STATEMENT_CACHE)})


@dataclass
class Database:
    """A service's database: a writer and a reader session factory over one URL."""

    url: str
    writer_engine: AsyncEngine
    writer: async_sessionmaker[AsyncSession]
    reader: async_sessionmaker[AsyncSession] | InlineSessionMaker
    info: dict[str, Any]
    # For a read of one statement: on PostgreSQL in autocommit, so no BEGIN and ROLLBACK go
    # round it (three round trips for one; the outbox relay reads after nearly every commit).
    # Never for reads of several statements that must see one snapshot. SQLite: the reader.
    one_statement_reader: async_sessionmaker[AsyncSession] | InlineSessionMaker
    # For writes each of which stands alone (the relay's marks): on PostgreSQL in autocommit,
    # each statement committed as it runs, with no BEGIN and COMMIT round trips. SQLite: the
    # writer, whose one connection takes its statements in a transaction.
    one_statement_writer: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, *, service: str, pool_size: int = 30, max_overflow: int = 0) -> Database:
        """`pool_size`, `max_overflow`: PostgreSQL's connections kept open, and how many more
        a burst may open (each closed again when returned; docs/operations.md)."""

        info: dict[str, Any] = {"service": service}
        reader: async_sessionmaker[AsyncSession] | InlineSessionMaker
        one_statement_reader: async_sessionmaker[AsyncSession] | InlineSessionMaker
        one_statement_writer: async_sessionmaker[AsyncSession] | None
        if is_sqlite(url):
            _enable_wal(url)
            writer_engine = _sqlite_writer(url)
            reader = one_statement_reader = InlineSessionMaker(_sqlite_reader(url), info)
            one_statement_writer = None
        else:
            writer_engine = create_async_engine(
                _with_statement_cache(url),
                pool_size=pool_size,
                max_overflow=max_overflow,
                # The connection returned last goes out first: the few that a service's load
                # keeps busy stay warm with their prepared statements; the rest sit idle.
                pool_use_lifo=True,
            )
            _ping_when_idle(writer_engine.sync_engine)
            _executemany_as_one_statement(writer_engine.sync_engine)
            reader = async_sessionmaker(writer_engine, expire_on_commit=False, info=info)
            autocommit = writer_engine.execution_options(isolation_level="AUTOCOMMIT")
            one_statement_reader = one_statement_writer = async_sessionmaker(
                autocommit, expire_on_commit=False, info=info
            )
        writer = async_sessionmaker(writer_engine, expire_on_commit=False, info=info)
        return cls(url, writer_engine, writer, reader, info, one_statement_reader, one_statement_writer or writer)

    async def dispose(self) -> None:
        await self.writer_engine.dispose()
        if isinstance(self.reader, InlineSessionMaker):
            self.reader.engine.dispose()


def dialect_name(session: AsyncSession | InlineSession) -> str:
    """The name of the session's database dialect: "sqlite" or "postgresql".

    A write session is bound to its engine; a SQLite read session (InlineSession)
    has the engine itself.
    """

    bind = session.engine if isinstance(session, InlineSession) else session.bind
    assert bind is not None, "every session here is made by a Database's factories, bound to its engine"
    return bind.dialect.name


def dialect_insert(table: Table, dialect: str) -> SqliteInsert | PostgresInsert:
    """The dialect's own INSERT (the one with ON CONFLICT) for `table`."""

    from sqlalchemy.dialects import postgresql, sqlite

    insert: SqliteInsert | PostgresInsert = {"sqlite": sqlite, "postgresql": postgresql}[dialect].insert(table)
    return insert


@cache
def _insert_ignoring(table: Table, index_elements: tuple[str, ...], dialect: str) -> SqliteInsert | PostgresInsert:
    return dialect_insert(table, dialect).on_conflict_do_nothing(index_elements=list(index_elements))


def insert_ignoring(session: AsyncSession, table: Table, index_elements: list[str]) -> SqliteInsert | PostgresInsert:
    """INSERT … ON CONFLICT (index_elements) DO NOTHING for the session's dialect (built once)."""

    return _insert_ignoring(table, tuple(index_elements), dialect_name(session))
