"""Durable pull consumers that apply each event exactly once to the service's state.

A consumer keeps one pull request open on its durable JetStream consumer and
handles whatever has arrived as one micro-batch: one transaction checks the inbox,
runs the handlers and records the handled event ids, then the messages are
acked. A redelivered or duplicated event finds its id in the inbox and is skipped.
If a batch fails, its events are retried one by one so a poison event cannot hold
the others back; a failing event is retried with back-off (`nak` with a delay)
and after `max_deliver` attempts it is parked: a dead-letter row plus an event on
`crm.dlq.<service>`, both committed together, then the message is terminated.

We drive the pull protocol ourselves rather than through nats-py's `fetch`,
whose batch fetch waits for a full batch or the whole expiry once the stream is
idle: that would put seconds between a commit and its effect.

Handlers get typed events (`shared.events.envelope.Event`): each payload is parsed once,
here, by its contract's tolerant reader (shared/events/contracts.py). A payload that is
really broken (a required field missing, a wrong type) can never succeed: it is
parked at once, the validation error in its dead-letter row, and the batch goes on.
The durable consumers are provisioned by `valuechain migrate` (`provision_consumers`),
not by the service: a runner checks that its consumer is there, reports it in readiness
when it is not, and checks again until it is.

Before a handler runs, every customer id a payload names (its contract's
`customers`) that was merged away is replaced by its survivor, looked up in the
service's one alias table (`ConsumerSpec.survivors`, one query per micro-batch).

Replicas of a service share each durable consumer, and one of them pulls it at a time: the
one holding the lease `consumer:<durable>` (shared/db/leases.py); the others stand by and
take over when its lease runs out. So the events of a customer are applied in stream order,
as by a single process, and the handlers need no change (docs/architecture.md says why this
rather than partitions). The lease is checked locally before each micro-batch; a runner that
finds it lost naks what it holds, for the new holder to get at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.database import Database, utcnow
from shared.db.leases import Leases
from shared.db.uow import transaction
from shared.events.bus import Bus, consumer_config, provision
from shared.events.contracts import CATALOG, dlq_subject
from shared.events.envelope import CloudEvent, Event
from shared.events.messaging import emit, handled_ids, record_handled, tables_of
from shared.observability import context
from shared.observability.metrics import Metrics
from shared.settings import ServiceSettings

log = logging.getLogger("valuechain.consumer")

PROVISION_CHECK_S = 2.0  # how often a missing consumer is looked for again
NO_RESPONDERS = "503"  # the status a pull on a consumer that is not there gets

Handler = Callable[[AsyncSession, Event[Any]], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[Event[Any]]], Awaitable[None]]
# {merged id: survivor} for those of the ids that were merged: a service's alias table.
Survivors = Callable[[AsyncSession, Iterable[str]], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class ConsumerSpec:
    """What a consumer is for and how it applies the events of its subjects.

    Either `handlers` maps each subject to a per-event handler, or `batch_handler`
    takes every new event of a micro-batch at once (in stream order) so that it
    can do its database work in a few statements instead of a few per event;
    `subjects` then lists what it consumes.

    `survivors` is the service's alias table: with it, handlers see merged
    customers as their survivors (shared/events/customer_aliases.py `CustomerAliases.consumers`
    sets it on every consumer of a service but those with `follows_merges=False`:
    the ones that record ids as announced and leave survivors to a merge step).
    """

    purpose: str
    handlers: dict[str, Handler] = field(default_factory=dict)
    description: str = ""
    batch_handler: BatchHandler | None = None
    subjects: tuple[str, ...] = ()
    survivors: Survivors | None = None
    follows_merges: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.all_subjects) - set(CATALOG)
        assert not unknown, f"consumer {self.purpose}: no contract for {sorted(unknown)}"

    @property
    def all_subjects(self) -> list[str]:
        return sorted(set(self.handlers) | set(self.subjects))

    def durable(self, service: str) -> str:
        return f"{service}-{self.purpose}"


def spec_config(spec: ConsumerSpec, settings: ServiceSettings) -> ConsumerConfig:
    """The durable JetStream consumer `spec` pulls from, as `valuechain migrate` provisions it."""

    return consumer_config(
        spec.durable(settings.service),
        spec.all_subjects,
        max_ack_pending=settings.consumer_batch * 4,
        ack_wait_s=settings.consumer_ack_wait_s,
    )


async def provision_consumers(js: JetStreamContext, specs: Iterable[ConsumerSpec], settings: ServiceSettings) -> None:
    """Create or update a service's stream and durable consumers: what `valuechain migrate`
    does for every service, as the NATS admin (the test suite does it the same way)."""

    await provision(
        js, settings.stream, [spec_config(spec, settings) for spec in specs], max_age_s=settings.stream_max_age_s
    )


@contextmanager
def caused_by(event: CloudEvent | Event[Any]) -> Iterator[None]:
    """Events emitted inside carry `event`'s correlation id and name it as their cause."""

    tokens = (
        context.correlation_id.set(event.correlationid or event.id),
        context.causation_id.set(event.id),
    )
    try:
        yield
    finally:
        context.causation_id.reset(tokens[1])
        context.correlation_id.reset(tokens[0])


class ConsumerRunner:
    def __init__(
        self, spec: ConsumerSpec, *, settings: ServiceSettings, db: Database, bus: Bus, metrics: Metrics, leases: Leases
    ):
        self.spec = spec
        self.service = settings.service
        self.name = spec.durable(settings.service)
        # One replica pulls at a time: the one holding this lease.
        self.lease = leases.want(f"consumer:{self.name}")
        self.settings = settings
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.batch = settings.consumer_batch
        self.expires_s = settings.consumer_expires_s
        self.heartbeat = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        # The bus generation (connection) on which the durable consumer was last found
        # provisioned; what is wrong with it otherwise (readiness shows it).
        self._checked_generation = -1
        self.problem: str | None = "not checked yet"

    # --- state for readiness -------------------------------------------------

    @property
    def stalled(self) -> bool:
        if self.task is None or self.task.done():
            return True
        return time.monotonic() - self.heartbeat > 3 * self.expires_s + 5

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"consumer:{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass

    # --- the pull loop -------------------------------------------------------

    @property
    def provisioned(self) -> bool:
        return self._checked_generation >= 0

    async def check_provisioned(self, js: JetStreamContext) -> bool:
        """Is the durable consumer there, with this spec's subjects? (`valuechain migrate`
        makes it; this service's NATS user may not.) Sets `problem` for readiness."""

        stream = self.settings.stream
        try:
            info = await js.consumer_info(stream, self.name)
        except NotFoundError as exc:
            missing = "stream" if "stream" in (exc.description or "") else "consumer"
            what = f"stream {stream}" if missing == "stream" else f"consumer {self.name} on stream {stream}"
            problem = f"missing: {what} (provisioned by `valuechain migrate`)"
            if problem != self.problem:
                log.error("consumer not provisioned, checking again", extra={"consumer": self.name, "error": problem})
            self.problem = problem
            return False
        subjects = sorted(
            info.config.filter_subjects or ([info.config.filter_subject] if info.config.filter_subject else [])
        )
        if subjects != self.spec.all_subjects:
            # It still delivers what it was made for; the new subjects wait for a migrate.
            problem = f"outdated: filters {subjects}, expected {self.spec.all_subjects} (run `valuechain migrate`)"
            if problem != self.problem:
                log.error("consumer provisioned with other subjects", extra={"consumer": self.name, "error": problem})
            self.problem = problem
        else:
            self.problem = None
        return True

    async def run(self) -> None:
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def enqueue(msg: Msg) -> None:
            queue.put_nowait(msg)

        await self.bus.connected.wait()
        nc = self.bus.nc
        assert nc is not None  # connected
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=enqueue)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.settings.stream}.{self.name}"
        request = orjson.dumps({"batch": self.batch, "expires": int(self.expires_s * 1e9)})
        leading = False  # pulling, since the lease was last found held
        term = 0  # the lease's term when this runner last took over
        while True:
            try:
                await self.bus.connected.wait()
                self.heartbeat = time.monotonic()
                if self._checked_generation != self.bus.generation:
                    assert self.bus.js is not None  # connected
                    generation = self.bus.generation
                    if not await self.check_provisioned(self.bus.js):
                        await asyncio.sleep(PROVISION_CHECK_S)
                        continue
                    self._checked_generation = generation
                if not self.lease.held:  # another replica pulls: stand by (not stalled) until it is ours
                    await self._stand_by()
                    leading = False
                    continue
                if not leading:
                    leading = True
                    if self.lease.term != term:  # taken, not only renewed late: what was left unacked?
                        term = self.lease.term
                        assert self.bus.js is not None  # connected
                        await self._take_over(self.bus.js)
                        continue  # the lease is checked again after the wait
                await nc.publish(next_subject, request, reply=inbox)
                if await self._drain_request(queue) == NO_RESPONDERS:
                    self._checked_generation = -1  # the consumer went away (NATS lost its store?)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep consuming whatever went wrong
                log.warning("consumer loop error", extra={"consumer": self.name, "error": repr(exc)})
                self._checked_generation = -1
                await asyncio.sleep(1.0)

    async def _drain_request(self, queue: asyncio.Queue[Msg]) -> str | None:
        """Handle messages until the open pull request is fulfilled or expires; returns
        the status that ended it, if one did."""

        owed = self.batch
        deadline = time.monotonic() + self.expires_s + 1.0
        while owed > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can lose a cancellation (3.11)
                    msg = await queue.get()
            except TimeoutError:
                return None
            batch: list[Msg] = []
            request_over: str | None = None
            while True:
                status = JetStreamContext.is_status_msg(msg)
                if status is None:
                    batch.append(msg)
                elif status != "100":  # 404 no messages, 408 expired, 409 conflicts, 503 no consumer end it
                    request_over = status
                if len(batch) >= owed or queue.empty():
                    break
                msg = queue.get_nowait()
            if batch and not self.lease.held:  # another replica may pull now: hand these back
                for held in batch:
                    await held.nak()
                return request_over
            if batch:
                owed -= len(batch)
                await self.process(batch)
            self.heartbeat = time.monotonic()
            if request_over:
                return request_over
        return None

    async def _stand_by(self) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation that
        # lands as the lease comes, and the runner would not stop.
        try:
            async with asyncio.timeout(self.expires_s):
                await self.lease.wait_held()
        except TimeoutError:
            pass
        self.heartbeat = time.monotonic()

    async def _take_over(self, js: JetStreamContext) -> None:
        """Just took the lease: events another holder left unacked (it died, or lost the lease
        mid-batch) come back only once their ack wait runs out, and would then be applied after
        later events of the same customers. Wait that long first: JetStream hands redeliveries
        out before new messages, so order is kept (a takeover with nothing pending starts at once)."""

        info = await js.consumer_info(self.settings.stream, self.name)
        if info.num_ack_pending:
            log.warning(
                "took over a consumer with unacked events: waiting for their redelivery",
                extra={"consumer": self.name, "pending": info.num_ack_pending},
            )
            await asyncio.sleep(self.settings.consumer_ack_wait_s)
            self.heartbeat = time.monotonic()

    # --- applying events -----------------------------------------------------

    async def process(self, msgs: list[Msg]) -> None:
        items: list[tuple[Msg, Event[Any]]] = []
        for msg in msgs:
            contract = CATALOG.get(msg.subject)  # an event's type is its subject
            try:
                if contract is None:
                    raise LookupError(msg.subject)
                items.append((msg, contract.read_json(msg.data)))
            except (LookupError, ValidationError) as exc:
                await self._unreadable(msg, exc)
        if not items:
            return
        try:
            await self._apply(items)
        except Exception:  # noqa: BLE001 - isolate the failing event(s)
            if len(items) == 1:
                await self._failed(*items[0], traceback.format_exc(limit=5))
                return
            for item in items:
                try:
                    await self._apply([item])
                except Exception:  # noqa: BLE001
                    await self._failed(*item, traceback.format_exc(limit=5))
                else:
                    await item[0].ack()
            return
        for msg, _ in items:
            await msg.ack()

    async def _unreadable(self, msg: Msg, exc: Exception) -> None:
        """Park at once an event no retry can mend: not an event at all, or a payload
        really broken (the validation error goes in its dead-letter row)."""

        try:
            envelope = CloudEvent.from_json(msg.data)
        except Exception as not_event:  # noqa: BLE001 - not an event at all
            await self._dead_letter(msg, None, f"undecodable event: {not_event}", self._deliveries(msg))
            return
        contract = CATALOG.get(envelope.type)
        if contract is None:
            error = f"no contract for {envelope.type}"
        else:
            try:
                contract.read(envelope)
            except ValidationError as invalid:
                error = f"invalid {envelope.type} payload: {invalid}"
            else:
                error = f"{envelope.type} published on {msg.subject}"
        await self._dead_letter(msg, envelope, error, self._deliveries(msg))

    async def _apply(self, items: list[tuple[Msg, Event[Any]]]) -> None:
        duplicates = 0
        async with transaction(self.db.writer) as session:
            seen = await handled_ids(session, self.name, {event.id for _, event in items})
            fresh: list[Event[Any]] = []
            for _, event in items:
                if event.id in seen:
                    duplicates += 1
                    continue
                seen.add(event.id)
                fresh.append(event)
            if self.spec.survivors is not None:
                fresh = await to_survivors(session, self.spec.survivors, fresh)
            if self.spec.batch_handler is not None and fresh:
                await self.spec.batch_handler(session, fresh)
            else:
                for event in fresh:
                    handler = self.spec.handlers.get(event.type)
                    if handler is not None:
                        with caused_by(event):
                            await handler(session, event)
            applied = len(fresh)
            await record_handled(session, self.name, [event.id for event in fresh], utcnow())
        if applied:
            self.metrics.events_handled.labels(self.service, self.name).inc(applied)
        if duplicates:
            self.metrics.events_duplicate.labels(self.service, self.name).inc(duplicates)

    @staticmethod
    def _deliveries(msg: Msg) -> int:
        try:
            return msg.metadata.num_delivered
        except Exception:  # noqa: BLE001 - not a JetStream message
            return 1

    async def _failed(self, msg: Msg, event: Event[Any], error: str) -> None:
        deliveries = self._deliveries(msg)
        self.metrics.events_failed.labels(self.service, self.name).inc()
        if deliveries >= self.settings.consumer_max_deliver:
            await self._dead_letter(msg, event, error, deliveries)
            return
        backoff = self.settings.consumer_backoff_s
        delay = backoff[min(deliveries - 1, len(backoff) - 1)]
        log.warning(
            "event failed, will retry",
            extra={
                "consumer": self.name,
                "event_id": event.id,
                "deliveries": deliveries,
                "retry_in_s": delay,
                "error": error.strip().splitlines()[-1],
            },
        )
        await msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, event: CloudEvent | Event[Any] | None, error: str, deliveries: int) -> None:
        token = context.correlation_id.set(event.correlationid if event else None)
        try:
            async with transaction(self.db.writer) as session:
                await session.execute(
                    insert(tables_of(session).dead_letters).values(
                        consumer=self.name,
                        event_id=event.id if event else None,
                        subject=msg.subject,
                        body=msg.data,
                        error=error,
                        deliveries=deliveries,
                        failed_at=utcnow(),
                    )
                )
                if event is not None:
                    # Never apply it later by accident: an operator replays it on purpose.
                    await record_handled(session, self.name, [event.id], utcnow())
                emit(
                    session,
                    dlq_subject(self.service),
                    {
                        "consumer": self.name,
                        "event_id": event.id if event else None,
                        "event_type": event.type if event else None,
                        "error": error,
                        "deliveries": deliveries,
                        "failed_at": utcnow(),
                        "raw": msg.data.decode("utf-8", "replace"),
                    },
                    subject=event.subject if event else None,
                )
        finally:
            context.correlation_id.reset(token)
        self.metrics.dead_letters.labels(self.service, self.name).inc()
        log.error(
            "event dead-lettered",
            extra={"consumer": self.name, "event_id": event.id if event else None, "deliveries": deliveries},
        )
        await msg.term()


async def to_survivors(session: AsyncSession, survivors: Survivors, events: list[Event[Any]]) -> list[Event[Any]]:
    """`events` with every merged customer they name replaced by its survivor (one lookup)."""

    named = {cid for event in events for cid in event.named_ids()}
    survivor = await survivors(session, named) if named else {}
    return [event.for_survivors(survivor) for event in events] if survivor else events
