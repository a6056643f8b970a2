"""Leases: work that one replica of a service does at a time (the relay, each consumer, the
schedules, a job), held through a row of the service's own `leases` table.

A lease is a row (name, holder, expires_at). Taking and renewing it is one conditional
UPDATE: the row becomes ours when it is ours already or has expired. No advisory locks, so it
works on SQLite as on PostgreSQL (a second UPDATE takes what has expired, so a holder knows
whether a lease stayed its own all along); several replicas of a service share one database, so its
rows are the one place they all see. One `Leases` per process renews every lease it holds
or wants in a single statement every `renew_s` (one round trip per tick, however many
leases), and releases them when the process stops; a holder that dies (SIGKILL) stops
renewing, and another replica takes the lease once `ttl_s` has passed.

A holder checks its lease locally, with no round trip: `Lease.held` is true until `ttl_s -
renew_s` after the start of the statement that last renewed it, measured on the monotonic
clock (which runs on while a process is paused by SIGSTOP). So a paused holder that wakes
knows it lost the lease before another replica may have taken it: the other replica waits
for `expires_at`, `renew_s` later, by the wall clock. The replicas' wall clocks must agree
(NTP) to well within `renew_s`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, ColumnElement, MetaData, String, Table, exists, insert, select, update
from sqlalchemy import delete as delete_
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.database import Database, UTCDateTime, insert_ignoring, utcnow

log = logging.getLogger("valuechain.leases")

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an expiry long past: a row nobody holds


def lease_table(metadata: MetaData) -> Table:
    return Table(
        "leases",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("holder", String(200), nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
    )


def holder_id() -> str:
    """This process's name in the table: host, pid and a random part (two runtimes in one
    process, as the tests start them, are two holders)."""

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def live(table: Table, name: ColumnElement[str], now: datetime, grace_s: float = 0.0) -> ColumnElement[bool]:
    """SQL: someone holds the lease called `name` (an expression: a job's is "import:" || id),
    or held it until less than `grace_s` ago (a job's replica may be alive, its renewal held up
    by another's long write: reap only what has been expired for a while)."""

    return exists().where(table.c.name == name, table.c.expires_at >= now - timedelta(seconds=grace_s))


class Lease:
    """One lease this process holds or wants; `held` is a local check (no round trip)."""

    def __init__(self, name: str):
        self.name = name
        self.valid_until = 0.0  # monotonic; 0 when not held
        self.acquired = asyncio.Event()
        # Counts the times this process took the lease from nobody or from another holder: the
        # same term means it was ours all along (held locally for lost, but renewed in time).
        self.term = 0
        # Set once the table shows the lease held by another after this process held it (a
        # late renewal alone does not set it).
        self.gone = asyncio.Event()

    @property
    def held(self) -> bool:
        return time.monotonic() < self.valid_until

    async def wait_held(self) -> None:
        while not self.held:
            self.acquired.clear()
            await self.acquired.wait()


class Leases:
    """The leases of one process (a service's runtime), renewed together by `run()`."""

    def __init__(self, db: Database, table: Table, *, ttl_s: float, renew_s: float, holder: str | None = None):
        if ttl_s <= renew_s:
            raise ValueError(f"a lease's ttl ({ttl_s} s) must exceed its renew interval ({renew_s} s)")
        self.db = db
        self.table = table
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.holder = holder or holder_id()
        self.leases: dict[str, Lease] = {}
        self._rows: set[str] = set()  # names whose row is known to exist
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        self.task: asyncio.Task[None] | None = None
        # False: stop() leaves the leases to expire, as a killed process does (the tests' way to die).
        self.release_on_stop = True

    def want(self, name: str) -> Lease:
        """Start competing for `name` (from the next tick, which comes at once)."""

        lease = self.leases.get(name)
        if lease is None:
            lease = self.leases[name] = Lease(name)
            self._wake.set()
        return lease

    async def claim(self, session: AsyncSession, name: str) -> float:
        """Take a lease nobody has yet (a new job's) in the caller's transaction: the job's row
        and its lease commit together, so no reaper sees the job without its holder. Once that
        commits, `adopt(name, <what this returned>)` keeps it renewed."""

        claimed = time.monotonic()
        await session.execute(
            insert(self.table).values(
                name=name, holder=self.holder, expires_at=utcnow() + timedelta(seconds=self.ttl_s)
            )
        )
        return claimed

    def adopt(self, name: str, claimed: float) -> Lease:
        """Renew from now on the lease `claim` took (its transaction committed)."""

        lease = self.want(name)
        lease.valid_until = claimed + self.ttl_s - self.renew_s
        lease.term += 1
        lease.acquired.set()
        self._rows.add(name)
        return lease

    async def release(self, name: str, *, delete: bool = False) -> None:
        """Give `name` up now, so another replica takes it at its next tick; `delete`: drop its
        row (a finished job's, which nobody will want again; others keep theirs cached)."""

        lease = self.leases.pop(name, None)
        if lease is None:
            return
        lease.valid_until = 0.0
        if delete:
            self._rows.discard(name)
            async with self.db.writer() as session, session.begin():
                await session.execute(
                    delete_(self.table).where(self.table.c.name == name, self.table.c.holder == self.holder)
                )
            return
        await self._expire([name])

    async def release_all(self) -> None:
        names = list(self.leases)
        for lease in self.leases.values():
            lease.valid_until = 0.0
        self.leases.clear()
        await self._expire(names)

    async def _expire(self, names: list[str]) -> None:
        if not names:
            return
        try:
            async with self.db.writer() as session, session.begin():
                await session.execute(
                    update(self.table)
                    .where(self.table.c.name.in_(names), self.table.c.holder == self.holder)
                    .values(expires_at=_EPOCH)
                )
        except Exception as exc:  # noqa: BLE001 - they expire by themselves
            log.warning("could not release leases", extra={"leases": names, "error": repr(exc)})

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="leases")

    async def stop(self) -> None:
        """Stop renewing and give every lease up (unless `release_on_stop` is off)."""

        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
        if self.release_on_stop:
            await self.release_all()
        else:
            for lease in self.leases.values():
                lease.valid_until = 0.0

    async def run(self) -> None:
        """Renew what is held and try for what is wanted, every `renew_s` (at once when a
        lease is newly wanted)."""

        while True:
            self._wake.clear()
            try:
                await self.tick()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the database is away: leases run out
                self.last_error = repr(exc)
                log.warning("lease renewal failed", extra={"error": repr(exc)})
            try:  # asyncio.timeout: Python 3.11's wait_for can lose a cancellation (stop would hang)
                async with asyncio.timeout(self.renew_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def tick(self) -> set[str]:
        """Renew every wanted lease held, take those expired (two UPDATEs in one transaction,
        whatever the number of leases); returns those held."""

        names = list(self.leases)
        if not names:
            return set()
        started = time.monotonic()
        now = utcnow()
        table = self.table
        async with self.db.writer() as session, session.begin():
            missing = [name for name in names if name not in self._rows]
            if missing:
                await session.execute(
                    insert_ignoring(session, table, ["name"]),
                    [{"name": name, "holder": "", "expires_at": _EPOCH} for name in missing],
                )
            until = now + timedelta(seconds=self.ttl_s)
            # Ours all along (nobody can have held it since, even if we took it for lost)...
            renewed = set(
                (
                    await session.execute(
                        update(table)
                        .where(table.c.name.in_(names), table.c.holder == self.holder)
                        .values(expires_at=until)
                        .returning(table.c.name)
                    )
                ).scalars()
            )
            # ...or taken now, from nobody or from a holder whose lease ran out.
            others = [name for name in names if name not in renewed]
            taken = set()
            if others:
                taken = set(
                    (
                        await session.execute(
                            update(table)
                            .where(table.c.name.in_(others), table.c.expires_at < now)
                            .values(holder=self.holder, expires_at=until)
                            .returning(table.c.name)
                        )
                    ).scalars()
                )
        held = renewed | taken
        self._rows.update(names)
        for name in names:
            lease = self.leases.get(name)
            if lease is None:  # released meanwhile
                continue
            if name in held:
                if name in taken:
                    lease.term += 1
                    log.info("lease taken", extra={"lease": name, "holder": self.holder})
                lease.valid_until = started + self.ttl_s - self.renew_s
                lease.acquired.set()
            else:
                if lease.valid_until:
                    log.warning("lease lost", extra={"lease": name, "holder": self.holder})
                lease.valid_until = 0.0
                if lease.term:  # another holder has it now: the table says so, not only the clock
                    lease.gone.set()
        return held

    async def holders(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """{name: holder} of the leases held now (readiness, tests)."""

        query = select(self.table.c.name, self.table.c.holder).where(self.table.c.expires_at >= utcnow())
        if names is not None:
            query = query.where(self.table.c.name.in_(list(names)))
        async with self.db.reader() as session:
            return {row.name: row.holder for row in (await session.execute(query)).all()}

    # --- running work under a lease -----------------------------------------------

    async def run_leased(self, name: str, work: Callable[[], Awaitable[T]], *, standby: bool = True) -> T | None:
        """Run `work()` while this process holds `name`, waiting for the lease first.

        With `standby` (a schedule, a loop), the work is cancelled as soon as the lease may
        have run out by the clock (the database unreachable for longer than the lease lasts, a
        pause), and this process waits to take the lease again and starts the work afresh.
        Without (a job, whose lease nobody else takes: a reaper fails the job once its lease
        has been expired for a TTL more), a renewal held up by a long write on SQLite must
        not kill the job: it is cancelled only if the table shows the lease gone to another,
        and None is returned. The lease is released when the work ends (a
        job's row deleted: without `standby` the name is taken to be a job's own).
        """

        lease = self.want(name)
        while True:
            await lease.wait_held()
            task: asyncio.Task[T] = asyncio.ensure_future(work())
            try:
                lost = await _until_done_or_lost(task, lease, by_clock=standby)
            finally:  # cancelled from outside (the service stops): stop() gives the lease up
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
            if not lost:
                await self.release(name, delete=not standby)
                return task.result()
            try:
                task.result()
            except asyncio.CancelledError:
                pass
            log.warning("work stopped: its lease was lost", extra={"lease": name})
            if not standby:
                await self.release(name, delete=True)
                return None

    @asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[Lease]:
        """Hold `name` for the block (waiting for it), released after: a mutex across replicas.
        The block should check `lease.held` between its steps."""

        lease = self.want(name)
        await lease.wait_held()
        try:
            yield lease
        except Exception:
            await self.release(name)
            raise
        # cancelled (the service stops): stop() gives the lease up
        await self.release(name)


async def _until_done_or_lost(task: asyncio.Task[Any], lease: Lease, *, by_clock: bool) -> bool:
    """Wait for `task`; True (the task cancelled) if `lease` ran out first (`by_clock`), or went
    to another holder."""

    if not by_clock:
        gone = asyncio.ensure_future(lease.gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task.done():
            return False
        task.cancel()
        await asyncio.wait({task})
        return True
    while not task.done():
        remaining = lease.valid_until - time.monotonic()
        if remaining <= 0:
            task.cancel()
            await asyncio.wait({task})
            return True
        await asyncio.wait({task}, timeout=remaining)
    return False
