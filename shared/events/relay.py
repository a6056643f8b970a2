"""The outbox relay: publishes committed events to JetStream, in order, at least once.

Each event goes out with `Nats-Msg-Id` = its event id, so a publish that timed out
but was stored is deduplicated by JetStream when the relay retries it. A batch is
published in order and marked published once the stream acknowledged every event
of it (shared/events/publisher.py); a task of its own marks them while the relay goes on
reading, skipping them, so a long write holding the database's writer does not stop publishing
(the outbox is read through the reader). The relay wakes when a transaction commits events and
also polls, so it catches up after a crash or a NATS outage without anyone
prodding it.

Replicas of a service share its outbox: only the one holding the lease `relay`
(shared/db/leases.py) publishes, so events keep their commit order; the others stand by
and take over once the holder's lease runs out. The holder checks its lease (locally, no
round trip) before each batch, and takes it for lost a renew interval before it expires
in the table, so a holder paused (SIGSTOP) and woken does not publish once another could
have begun. A batch it had begun before the pause may still go out beside the new
holder's: each event keeps its `Nats-Msg-Id`, so JetStream drops the second copy within
its duplicate window (2 minutes by default, far longer than a lease), and since each relay
publishes in outbox order, the first copies stay in that order too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import bindparam, func, select, update

from shared.db.bulk import fetch_all, key_chunks, none_of, one_of
from shared.db.database import Database, utcnow
from shared.db.leases import Lease
from shared.events.bus import Bus
from shared.events.messaging import MessagingTables, outbox_events
from shared.events.publisher import BatchPublisher
from shared.observability.metrics import Metrics

log = logging.getLogger("valuechain.relay")

# Published rows awaiting their mark that a read skips by name (NOT IN); past this many it
# reads after the last of them instead, and goes back for any row committed late once the
# marks caught up.
SKIP_LIMIT = 1000


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        tables: MessagingTables,
        bus: Bus,
        metrics: Metrics,
        *,
        batch: int,
        poll_s: float,
        lease: Lease,
        mark_delay_s: float = 0.0,
    ):
        self.db = db
        self.lease = lease
        self.outbox = tables.outbox
        self.bus = bus
        self.metrics = metrics
        self.batch = batch
        self.poll_s = poll_s
        self.mark_delay_s = mark_delay_s
        self._wake = asyncio.Event()
        self.last_success = time.monotonic()
        self.last_error: str | None = None
        self.paused = False  # tests stop the relay to simulate it being down
        self.publish_timeout_s = 10.0
        self.publisher = BatchPublisher(bus)
        # Rows published whose published_at is not written yet: the marker task writes it when
        # the database's writer is free (a long transaction, a campaign's launch chunk, holds it)
        # and `mark_delay_s` has gathered them, while the relay reads on, skipping them. Not a
        # cursor (`seq > last published`): on PostgreSQL a transaction that took a lower seq
        # can commit after a higher one was published, and under steady load a cursor never
        # went back for it (its events waited for a lull: seconds).
        self._unmarked: list[int] = []  # the marker's queue
        self._published: set[int] = set()  # published, their mark not yet committed
        self._marker: asyncio.Task[None] | None = None
        # Built once: the relay reads after nearly every commit, and building a statement and
        # its cache key cost more than running it.
        outbox = self.outbox
        pending = (
            select(outbox.c.seq, outbox.c.event_id, outbox.c.subject, outbox.c.body)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.seq)
            .limit(batch)
        )
        self._pending = pending
        # The seqs to skip and to mark in one array parameter on PostgreSQL: an IN list made a
        # statement (and a prepared plan) for every length of the list.
        self._dialect = db.writer_engine.dialect.name
        self._pending_skipping = pending.where(none_of(outbox.c.seq, self._dialect, "skip"))
        self._pending_after = pending.where(outbox.c.seq > bindparam("after"))
        self._mark = (
            update(outbox)
            .where(one_of(outbox.c.seq, self._dialect, "seqs"))
            .values(published_at=bindparam("now"), attempts=outbox.c.attempts + 1)
        )

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # stopped: rows published but not yet marked are published again at the next start
            if self._marker is not None:
                self._marker.cancel()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:  # asyncio.timeout: Python 3.11's wait_for can lose a cancellation (stop would hang)
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self.paused:
                continue
            if not self.lease.held:  # another replica publishes: stand by until the lease is ours
                await self.lease.wait_held()
            try:
                while await self.publish_pending() == self.batch and self.lease.held:
                    pass
                backoff = 0.1
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS or DB trouble: retry with the same ids
                self.last_error = repr(exc)
                log.warning("outbox relay failed, will retry", extra={"error": repr(exc), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()

    async def publish_pending(self) -> int:
        """Publish the events of one batch of pending outbox rows; returns how many rows."""

        if self.paused:  # checked here too: a turn already under way when it was paused reads nothing more
            return 0
        if not self.bus.is_connected:
            raise ConnectionError("NATS is not connected")
        if not self.lease.held:  # checked before each batch: another replica may publish now
            return 0
        published = self._published
        params: dict[str, Any]
        if len(published) > SKIP_LIMIT:  # a long backlog of marks: read on past them, for now
            query, params = self._pending_after, {"after": max(published)}
        elif published:
            query, params = self._pending_skipping, {"skip": list(published)}
        else:
            query, params = self._pending, {}
        async with self.db.one_statement_reader() as session:
            rows = await fetch_all(session, query, params)
        if not rows:
            if self._marker is not None and self._marker.done():
                await self.marked()  # raises the marker's failure, if it failed
            # A marker still at work is not waited for: the relay would sit out its mark delay,
            # and events committed meanwhile with it.
            self.last_success = time.monotonic()
            return 0
        messages = [
            (subject, body, event_id)
            for _, first_id, subject, row_body in rows
            for event_id, body in outbox_events(first_id, row_body)
        ]
        await self.publisher.publish(messages, timeout_s=self.publish_timeout_s)
        seqs = [row[0] for row in rows]
        self._unmarked.extend(seqs)
        published.update(seqs)
        if self._marker is not None and self._marker.done():
            await self.marked()  # raises the marker's failure, if it failed
        if self._marker is None:
            self._marker = asyncio.create_task(self._mark_published(), name="outbox-marker")
        self.metrics.outbox_published.labels(self.metrics.service).inc(len(messages))
        self.last_success = time.monotonic()
        return len(rows)

    async def marked(self) -> None:
        """Once every row published so far has its published_at (a failure to write it is
        raised: those rows are published again, and JetStream drops the duplicates)."""

        marker = self._marker
        if marker is not None:
            try:
                await marker
            finally:  # cleared once done, so pending_count() waits for it meanwhile
                if self._marker is marker:
                    self._marker = None

    async def _mark_published(self) -> None:
        # Rows published meanwhile join this write (the relay reads on past them meanwhile).
        await asyncio.sleep(self.mark_delay_s)
        while self._unmarked:
            seqs, self._unmarked = self._unmarked, []
            try:
                # Each chunk's mark stands alone (a chunk left unmarked is published again, and
                # JetStream drops the duplicates): on PostgreSQL no transaction goes round them.
                async with self.db.one_statement_writer() as session, session.begin():
                    for chunk in key_chunks(seqs, self._dialect):
                        await session.execute(self._mark, {"seqs": chunk, "now": utcnow()})
            finally:  # marked, or (the write failed) to be read and published again
                self._published.difference_update(seqs)

    async def pending_count(self) -> int:
        """Rows not yet published (rows being marked published are waited for, not counted)."""

        if self._marker is not None:
            await asyncio.wait([self._marker])  # its failure stays for the relay's loop to raise
        async with self.db.reader() as session:
            return (
                await session.execute(select(func.count()).where(self.outbox.c.published_at.is_(None)))
            ).scalar_one()
