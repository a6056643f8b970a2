"""Durable pull consumers that apply each event exactly once to the service's state.

A service declares its consumers as `ConsumerSpec`s (a purpose and its handlers). The
specs of one `group` (all of them by default) share one durable JetStream consumer,
`<service>-<group>`, whose filter is the union of their subjects: one delivery, one parse,
one transaction and one ack per event for the whole service, instead of one per spec. A
purchase reached eleven specs in four services, and per-spec deliveries and transactions
were most of the suite's CPU per write (docs/benchmarks.md, "CPU per purchase").

A runner keeps one pull request open on its durable consumer and handles whatever has
arrived as one micro-batch (while busy, waiting up to `consumer_linger_s`, or its group's
`consumer_group_linger_s`, after its first event for more; a consumer is busy when its
previous micro-batch was applied less than that long ago, so an event after a quiet spell
is applied at once):
one transaction claims the events in the inbox, runs each spec's handlers on the events of
its subjects, then the messages are acked. In a durable of several specs, an event applied by
every spec that takes it, in one transaction, is claimed in one inbox row for all of them
(`<durable>:all`); an event that a spec applied on its own (after its batch failed, below),
and every event of a durable with one spec, has a row for the spec (`<service>-<purpose>`).
A redelivered or duplicated event is skipped by every spec that its rows cover, so a retry
runs only the specs that failed. If a batch fails, its events are retried one by one, and a
failing event spec by spec, so a poison event (or a spec that cannot apply it yet) holds
back neither the others nor the other specs; a failing event is retried with back-off
(`nak` with a delay) and after `max_deliver` attempts it is parked for the specs that
failed: a dead-letter row each plus an event on `crm.dlq.<service>`, committed together,
then the message is terminated.

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
from shared.events.messaging import claim_events, emit, record_handled, tables_of
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
    # The durable consumer it shares (`<service>-<group>`); a spec of its own group gets its own.
    group: str = "events"

    def __post_init__(self) -> None:
        unknown = set(self.all_subjects) - set(CATALOG)
        assert not unknown, f"consumer {self.purpose}: no contract for {sorted(unknown)}"

    @property
    def all_subjects(self) -> list[str]:
        return sorted(set(self.handlers) | set(self.subjects))

    def durable(self, service: str) -> str:
        """Its name in the inbox, dead letters, metrics and the event catalog."""
        return f"{service}-{self.purpose}"


# A spec as a runner routes to it: the spec, its name, the subjects it takes.
Route = tuple["ConsumerSpec", str, frozenset[str]]


@dataclass(frozen=True)
class ConsumerGroup:
    """Specs of one service that share a durable JetStream consumer."""

    service: str
    group: str
    specs: tuple[ConsumerSpec, ...]

    @property
    def durable(self) -> str:
        return f"{self.service}-{self.group}"

    @property
    def all_subjects(self) -> list[str]:
        return sorted({subject for spec in self.specs for subject in spec.all_subjects})


def consumer_groups(service: str, specs: Iterable[ConsumerSpec]) -> list[ConsumerGroup]:
    """The durable consumers a service's specs need, each with its specs in declared order."""

    by_group: dict[str, list[ConsumerSpec]] = {}
    for spec in specs:
        by_group.setdefault(spec.group, []).append(spec)
    return [ConsumerGroup(service, group, tuple(members)) for group, members in by_group.items()]


def group_config(group: ConsumerGroup, settings: ServiceSettings) -> ConsumerConfig:
    """The durable JetStream consumer `group` pulls from, as `valuechain migrate` provisions it."""

    return consumer_config(
        group.durable,
        group.all_subjects,
        max_ack_pending=settings.consumer_batch * 4,
        ack_wait_s=settings.consumer_ack_wait_s,
    )


async def provision_consumers(js: JetStreamContext, specs: Iterable[ConsumerSpec], settings: ServiceSettings) -> None:
    """Create or update a service's stream and durable consumers: what `valuechain migrate`
    does for every service, as the NATS admin (the test suite does it the same way)."""

    await provision(
        js,
        settings.stream,
        [group_config(group, settings) for group in consumer_groups(settings.service, specs)],
        max_age_s=settings.stream_max_age_s,
        replicas=settings.stream_replicas,
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
        self,
        group: ConsumerGroup,
        *,
        settings: ServiceSettings,
        db: Database,
        bus: Bus,
        metrics: Metrics,
        leases: Leases,
    ):
        self.group = group
        self.service = settings.service
        self.name = group.durable
        self.subjects = group.all_subjects
        # Each spec's name and the subjects it takes, for routing a batch's events.
        self.routes = [(spec, spec.durable(self.service), frozenset(spec.all_subjects)) for spec in group.specs]
        # One replica pulls at a time: the one holding this lease.
        self.lease = leases.want(f"consumer:{self.name}")
        self.settings = settings
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.batch = settings.consumer_batch
        self.expires_s = settings.consumer_expires_s
        self.linger_s = settings.consumer_group_linger_s.get(group.group, settings.consumer_linger_s)
        self._applied_at = float("-inf")  # when the last micro-batch was applied (busy: lately)
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
        if subjects != self.subjects:
            # It still delivers what it was made for; the new subjects wait for a migrate.
            problem = f"outdated: filters {subjects}, expected {self.subjects} (run `valuechain migrate`)"
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
            now = time.monotonic()
            # Linger only while busy: after a quiet spell nothing else is coming to share with.
            linger_until = now + self.linger_s if now - self._applied_at < self.linger_s else now
            while True:
                status = JetStreamContext.is_status_msg(msg)
                if status is None:
                    batch.append(msg)
                elif status != "100":  # 404 no messages, 408 expired, 409 conflicts, 503 no consumer end it
                    request_over = status
                if len(batch) >= owed:
                    break
                if queue.empty():
                    wait = linger_until - time.monotonic()
                    if not batch or request_over or wait <= 0:
                        break
                    try:
                        async with asyncio.timeout(wait):
                            msg = await queue.get()
                    except TimeoutError:
                        break
                    continue
                msg = queue.get_nowait()
            if batch and not self.lease.held:  # another replica may pull now: hand these back
                for held in batch:
                    await held.nak()
                return request_over
            if batch:
                owed -= len(batch)
                await self.process(batch)
                self._applied_at = time.monotonic()
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
            await self._apply(items, self.routes)
        except Exception as exc:  # noqa: BLE001 - isolate the failing event(s), then the failing spec(s)
            # Said once per batch: a batch that fails where its events alone do not (a handler
            # that cannot take some mix of events) costs a transaction per event, silently else.
            log.warning(
                "micro-batch failed, applying its events one by one",
                extra={"consumer": self.name, "events": len(items), "error": repr(exc)},
            )
            for item in items:
                await self._apply_alone(*item)
            return
        for msg, _ in items:
            await msg.ack()

    async def _apply_alone(self, msg: Msg, event: Event[Any]) -> None:
        """One event, after its batch failed: all its specs at once, else each on its own, so
        the specs that can apply it keep it and only the failing ones retry it."""

        routes = [route for route in self.routes if event.type in route[2]]
        try:
            await self._apply([(msg, event)], routes)
        except Exception:  # noqa: BLE001
            failed: list[tuple[str, str]] = []
            if len(routes) == 1:
                failed.append((routes[0][1], traceback.format_exc(limit=5)))
            else:
                for route in routes:
                    try:
                        await self._apply([(msg, event)], [route], alone=True)
                    except Exception:  # noqa: BLE001
                        failed.append((route[1], traceback.format_exc(limit=5)))
            if failed:
                await self._failed(msg, event, failed)
                return
        await msg.ack()

    async def _unreadable(self, msg: Msg, exc: Exception) -> None:
        """Park at once an event no retry can mend: not an event at all, or a payload
        really broken (the validation error goes in its dead-letter row)."""

        try:
            envelope = CloudEvent.from_json(msg.data)
        except Exception as not_event:  # noqa: BLE001 - not an event at all
            await self._dead_letter(
                msg, None, self._takers(msg.subject, f"undecodable event: {not_event}"), self._deliveries(msg)
            )
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
        await self._dead_letter(msg, envelope, self._takers(envelope.type, error), self._deliveries(msg))

    async def _apply(self, items: list[tuple[Msg, Event[Any]]], routes: list[Route], *, alone: bool = False) -> None:
        """Apply the events for `routes`: every spec that takes them (claimed in one inbox row
        an event), or, `alone`, one spec of several (claimed in a row of its own, so that a
        retry skips it and runs only the specs that failed)."""

        events = [event for _, event in items]
        # Which spec takes which event (an event twice in a batch is applied once, and the
        # second copy counts as a duplicate, as it would in a batch of its own).
        taken: list[tuple[Route, list[Event[Any]]]] = []
        repeats: dict[str, int] = {}
        for route in routes:
            by_id: dict[str, Event[Any]] = {}
            for event in events:
                if event.type in route[2]:
                    if event.id in by_id:
                        repeats[route[1]] = repeats.get(route[1], 0) + 1
                    else:
                        by_id[event.id] = event
            if by_id:
                taken.append((route, list(by_id.values())))
        async with transaction(self.db.writer) as session:
            pairs = [(route[1], event.id) for route, mine in taken for event in mine]
            fresh = await claim_events(session, self.name, pairs, utcnow(), several=len(self.routes) > 1, alone=alone)
            # Per alias table, one lookup per batch. Keyed by the lookup itself: each spec holds
            # its own bound method of the table, equal (not identical) to the others'.
            as_survivors: dict[Survivors, dict[str, Event[Any]]] = {}
            applied: dict[str, int] = {}
            for (spec, name, _), mine in taken:
                todo = [event for event in mine if (name, event.id) in fresh]
                if not todo:
                    continue
                if spec.survivors is not None:
                    if spec.survivors not in as_survivors:
                        merged = await to_survivors(session, spec.survivors, events)
                        as_survivors[spec.survivors] = {event.id: event for event in merged}
                    todo = [as_survivors[spec.survivors][event.id] for event in todo]
                if spec.batch_handler is not None:
                    await spec.batch_handler(session, todo)
                else:
                    for event in todo:
                        handler = spec.handlers.get(event.type)
                        if handler is not None:
                            with caused_by(event):
                                await handler(session, event)
                applied[name] = len(todo)
        for name, count in applied.items():
            self.metrics.events_handled.labels(self.service, name).inc(count)
        for name, event_id in pairs:
            if (name, event_id) not in fresh:
                self.metrics.events_duplicate.labels(self.service, name).inc()
        for name, count in repeats.items():
            self.metrics.events_duplicate.labels(self.service, name).inc(count)

    @staticmethod
    def _deliveries(msg: Msg) -> int:
        try:
            return msg.metadata.num_delivered
        except Exception:  # noqa: BLE001 - not a JetStream message
            return 1

    async def _failed(self, msg: Msg, event: Event[Any], failed: list[tuple[str, str]]) -> None:
        """`failed`: (spec name, error) of each spec that could not apply `event`."""

        deliveries = self._deliveries(msg)
        for name, _ in failed:
            self.metrics.events_failed.labels(self.service, name).inc()
        error = failed[-1][1]
        if deliveries >= self.settings.consumer_max_deliver:
            await self._dead_letter(msg, event, failed, deliveries)
            return
        backoff = self.settings.consumer_backoff_s
        delay = backoff[min(deliveries - 1, len(backoff) - 1)]
        log.warning(
            "event failed, will retry",
            extra={
                "consumer": ", ".join(name for name, _ in failed),
                "event_id": event.id,
                "deliveries": deliveries,
                "retry_in_s": delay,
                "error": error.strip().splitlines()[-1],
            },
        )
        await msg.nak(delay=delay)

    async def _dead_letter(
        self, msg: Msg, event: CloudEvent | Event[Any] | None, failed: list[tuple[str, str]], deliveries: int
    ) -> None:
        """Park `event` for each (spec name, error) of `failed`, and terminate its message."""

        token = context.correlation_id.set(event.correlationid if event else None)
        try:
            async with transaction(self.db.writer) as session:
                for name, error in failed:
                    await session.execute(
                        insert(tables_of(session).dead_letters).values(
                            consumer=name,
                            event_id=event.id if event else None,
                            subject=msg.subject,
                            body=msg.data,
                            error=error,
                            deliveries=deliveries,
                            failed_at=utcnow(),
                        )
                    )
                    emit(
                        session,
                        dlq_subject(self.service),
                        {
                            "consumer": name,
                            "event_id": event.id if event else None,
                            "event_type": event.type if event else None,
                            "error": error,
                            "deliveries": deliveries,
                            "failed_at": utcnow(),
                            "raw": msg.data.decode("utf-8", "replace"),
                        },
                        subject=event.subject if event else None,
                    )
                if event is not None:
                    # Never apply it later by accident: an operator replays it on purpose.
                    await record_handled(session, [(name, event.id) for name, _ in failed], utcnow())
        finally:
            context.correlation_id.reset(token)
        for name, _ in failed:
            self.metrics.dead_letters.labels(self.service, name).inc()
        log.error(
            "event dead-lettered",
            extra={
                "consumer": ", ".join(name for name, _ in failed),
                "event_id": event.id if event else None,
                "deliveries": deliveries,
            },
        )
        await msg.term()

    def _takers(self, subject: str, error: str) -> list[tuple[str, str]]:
        """(spec name, error) for each spec that takes `subject`: an unreadable event is
        parked for each of them (or for the durable consumer when none does)."""

        return [(name, error) for _, name, subjects in self.routes if subject in subjects] or [(self.name, error)]


async def to_survivors(session: AsyncSession, survivors: Survivors, events: list[Event[Any]]) -> list[Event[Any]]:
    """`events` with every merged customer they name replaced by its survivor (one lookup)."""

    named = {cid for event in events for cid in event.named_ids()}
    survivor = await survivors(session, named) if named else {}
    return [event.for_survivors(survivor) for event in events] if survivor else events
