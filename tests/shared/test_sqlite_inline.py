"""The SQLite writer runs statements inline on the event loop (shared/db/sqlite_inline.py):
it must wait for another connection's write lock without blocking the loop, hand bulk
work to a thread, and keep SQLAlchemy's transaction semantics."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from shared.db.database import Database
from shared.db.sqlite_inline import statements_on_threads


@pytest.fixture
async def two_writers(tmp_path):
    """Two Databases on one file in one event loop, as a test or a CLI beside a service."""

    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    first, second = Database.connect(url, service="a"), Database.connect(url, service="b")
    async with first.writer() as session, session.begin():
        await session.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"))
    yield first, second
    await first.dispose()
    await second.dispose()


@asynccontextmanager
async def loop_ticks():
    """Counts the event loop's 1 ms ticks while the block runs: a blocked loop makes none."""

    ticks = [0]

    async def tick():
        while True:
            await asyncio.sleep(0.001)
            ticks[0] += 1

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        yield ticks
    finally:
        ticking.cancel()


async def test_a_writer_waits_for_another_connections_lock_without_blocking_the_loop(two_writers):
    first, second = two_writers
    order: list[str] = []

    async def second_write():
        async with second.writer() as session, session.begin():
            await session.execute(text("INSERT INTO items (name) VALUES ('second')"))
        order.append("second committed")

    async with loop_ticks() as ticks:
        async with first.writer() as session, session.begin():
            await session.execute(text("INSERT INTO items (name) VALUES ('first')"))
            waiting = asyncio.create_task(second_write())
            await asyncio.sleep(0.2)  # holding the write lock while the loop runs on
            assert not waiting.done()
            ticks_while_held = ticks[0]
            order.append("first committing")
        await asyncio.wait_for(waiting, timeout=10)
    # Had the second writer waited inside SQLite, the loop would have stood still and
    # the first transaction could never have finished.
    assert ticks_while_held >= 20
    assert order == ["first committing", "second committed"]
    async with first.reader() as session:
        names = (await session.execute(text("SELECT name FROM items ORDER BY id"))).scalars().all()
    assert names == ["first", "second"]


async def test_bulk_writes_run_off_the_loop_and_roll_back_with_the_transaction(two_writers):
    first, _ = two_writers
    rows = [{"name": f"row-{i}"} for i in range(5_000)]  # above INLINE_MANY: on a thread
    async with first.writer() as session, session.begin():
        await session.execute(text("INSERT INTO items (name) VALUES (:name)"), rows)
    with pytest.raises(RuntimeError):
        async with first.writer() as session, session.begin():
            await session.execute(text("INSERT INTO items (name) VALUES (:name)"), rows)
            raise RuntimeError("the request failed after its bulk insert")
    async with first.reader() as session:
        count = (await session.execute(text("SELECT COUNT(*) FROM items"))).scalar_one()
    assert count == 5_000


async def test_a_statement_error_is_the_drivers_and_leaves_the_writer_usable(two_writers):
    first, _ = two_writers
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        async with first.writer() as session, session.begin():
            await session.execute(text("INSERT INTO items (id, name) VALUES (1, 'a'), (1, 'b')"))
    async with first.writer() as session, session.begin():
        await session.execute(text("INSERT INTO items (id, name) VALUES (1, 'a')"))
    async with first.reader() as session:
        assert (await session.execute(text("SELECT name FROM items"))).scalars().all() == ["a"]


async def test_a_write_cancelled_during_bulk_work_rolls_back_and_leaves_the_writer_usable(two_writers):
    first, _ = two_writers
    rows = [{"name": f"row-{i}"} for i in range(200_000)]
    started = asyncio.Event()

    async def bulk():
        async with first.writer() as session, session.begin():
            await session.execute(text("INSERT INTO items (name) VALUES ('before')"))
            started.set()
            await session.execute(text("INSERT INTO items (name) VALUES (:name)"), rows)

    task = asyncio.create_task(bulk())
    await started.wait()
    await asyncio.sleep(0.01)  # the executemany is on its thread by now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with first.writer() as session, session.begin():
        await session.execute(text("INSERT INTO items (name) VALUES ('after')"))
    async with first.reader() as session:
        names = (await session.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["after"]


SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c"


async def _ticks_during_slow_statement(db, *, on_threads: bool) -> int:
    async def slow_write():
        if on_threads:
            statements_on_threads()
        async with db.writer() as session, session.begin():
            assert (await session.execute(text(SLOW))).scalar_one() == 3_000_000

    async with loop_ticks() as ticks:
        before = ticks[0]
        await asyncio.create_task(slow_write())
        return ticks[0] - before


async def test_a_bulk_task_runs_its_statements_on_threads_and_others_stay_inline(two_writers):
    first, _ = two_writers
    # An API write runs inline: the loop waits for the statement (cheap for small ones).
    assert await _ticks_during_slow_statement(first, on_threads=False) <= 2
    # An import or refit task asks for threads: the loop keeps serving meanwhile.
    assert await _ticks_during_slow_statement(first, on_threads=True) >= 20
    # The request was the task's own: a later task runs inline again.
    assert await _ticks_during_slow_statement(first, on_threads=False) <= 2
