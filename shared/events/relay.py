"""The outbox relay: publishes committed events to JetStream, in order, at least once.

Each event goes out with `Nats-Msg-Id` = its event id, so a publish that timed out
but was stored is deduplicated by JetStream when the relay retries it. A batch is
published in order and marked published once the stream acknowledged every event
of it (shared/events/publisher.py). The relay wakes when a transaction commits events and
also polls, so it catches up after a crash or a NATS outage without anyone
prodding it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import func, select, update

from shared.db.database import Database, utcnow
from shared.events.bus import Bus
from shared.events.messaging import MessagingTables, outbox_events
from shared.events.publisher import BatchPublisher
from shared.observability.metrics import Metrics

log = logging.getLogger("valuechain.relay")


class OutboxRelay:
    def __init__(self, db: Database, tables: MessagingTables, bus: Bus, metrics: Metrics, *, batch: int, poll_s: float):
        self.db = db
        self.outbox = tables.outbox
        self.bus = bus
        self.metrics = metrics
        self.batch = batch
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self.last_success = time.monotonic()
        self.last_error: str | None = None
        self.paused = False  # tests stop the relay to simulate it being down
        self.publish_timeout_s = 10.0
        self.publisher = BatchPublisher(bus)

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
            if self.paused:
                continue
            try:
                while await self.publish_pending() == self.batch:
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

        if not self.bus.is_connected:
            raise ConnectionError("NATS is not connected")
        async with self.db.reader() as session:
            rows = (
                await session.execute(
                    select(self.outbox.c.seq, self.outbox.c.event_id, self.outbox.c.subject, self.outbox.c.body)
                    .where(self.outbox.c.published_at.is_(None))
                    .order_by(self.outbox.c.seq)
                    .limit(self.batch)
                )
            ).all()
        if not rows:
            self.last_success = time.monotonic()
            return 0
        messages = [
            (row.subject, body, event_id) for row in rows for event_id, body in outbox_events(row.event_id, row.body)
        ]
        await self.publisher.publish(messages, timeout_s=self.publish_timeout_s)
        async with self.db.writer() as session, session.begin():
            await session.execute(
                update(self.outbox)
                .where(self.outbox.c.seq.in_([row.seq for row in rows]))
                .values(published_at=utcnow(), attempts=self.outbox.c.attempts + 1)
            )
        self.metrics.outbox_published.labels(self.metrics.service).inc(len(messages))
        self.last_success = time.monotonic()
        return len(rows)

    async def pending_count(self) -> int:
        async with self.db.reader() as session:
            return (
                await session.execute(select(func.count()).where(self.outbox.c.published_at.is_(None)))
            ).scalar_one()
