"""Delivering webhooks: one worker per enabled subscription, each pulling from the
subscription's own durable consumer with its own HTTP connections, so a slow or dead
endpoint holds up nobody else.

A worker keeps up to `webhook_in_flight` deliveries in flight (pull requests ask for
as many messages as there are free slots), so one subscription is not bound to one
round trip at a time; order is therefore not guaranteed (nor is it by retries). Each
attempt is logged (`webhook_deliveries`, written in batches) and then settled on the
stream: acked when delivered; `nak` with the schedule's delay when it failed (the
delay lives in JetStream, so a restart of network loses nothing and resumes the
schedule); terminated when the receiver answers `webhook-delivery: abort-message`
or the schedule is over. A 410 disables the subscription, and so do
`webhook_disable_after_days` of nothing but failures (event crm.network.webhook.disabled).

Per subscription: an optional rate limit (a token bucket, deliveries per second) and
a circuit breaker (after `webhook_breaker_failures` consecutive failures no call for
`webhook_breaker_cooldown_s`, then one probe: success closes it, failure re-opens it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.network.webhooks import filters, repository, streams
from services.network.webhooks.models import WebhookSubscription
from services.network.webhooks.signing import Signer, utc_now
from services.network.webhooks.ssrf import AllowList, Guard
from shared.db.database import Database
from shared.db.ids import uuid7
from shared.db.uow import transaction
from shared.events.messaging import emit
from shared.events.public import public_event
from shared.settings import NetworkSettings

if TYPE_CHECKING:
    from shared.service.runtime import Runtime

log = logging.getLogger("valuechain.webhooks")

BODY_KEPT = 1024  # bytes of a response the log keeps
PULL_EXPIRES_S = 5.0
REPLAY_PULL_EXPIRES_S = 1.0
ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"


# --- outcomes --------------------------------------------------------------------------


@dataclass
class Attempt:
    outcome: str  # delivered, failed, aborted, gone, refused
    status_code: int | None = None
    latency_ms: float | None = None
    body: str | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "refused", "gone")


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date)."""

    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utc_now()).total_seconds())
    except (TypeError, ValueError):
        return None


async def post(client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    """One HTTP attempt: redirects are not followed (a 3xx is a failure), the first KB kept."""

    started = time.perf_counter()
    try:
        async with client.post(url, data=body, headers=headers, allow_redirects=False) as response:
            kept = b""
            while len(kept) < BODY_KEPT:
                chunk = await response.content.read(BODY_KEPT - len(kept))
                if not chunk:
                    break
                kept += chunk
            latency = (time.perf_counter() - started) * 1000
            text = kept.decode("utf-8", "replace")
            status = response.status
            if 200 <= status < 300:
                return Attempt("delivered", status, latency, text)
            if response.headers.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE:
                return Attempt("aborted", status, latency, text, f"the receiver answered {ABORT_HEADER}: {ABORT_VALUE}")
            if status == 410:
                return Attempt("gone", status, latency, text, "410 Gone: the subscription is disabled")
            wait = retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
            return Attempt("failed", status, latency, text, f"HTTP {status}", wait)
    except TimeoutError as exc:
        return Attempt("failed", None, (time.perf_counter() - started) * 1000, None, f"timeout: {type(exc).__name__}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        return Attempt("failed", None, (time.perf_counter() - started) * 1000, None, error)


# --- protecting the receiver ---------------------------------------------------------------


class Breaker:
    """Closed, open (no calls until `open_until`), then half-open (one probe at a time)."""

    def __init__(self, failures: int, cooldown_s: float):
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def state(self) -> str:
        if not self.open_until:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half-open"

    async def admit(self, keep_alive: Callable[[], Awaitable[None]]) -> None:
        """Wait until a call may go out (a held message is kept from redelivery meanwhile)."""

        last_kept = time.monotonic()
        while self.open_until:
            now = time.monotonic()
            if now >= self.open_until and not self.probing:
                self.probing = True
                return
            if now - last_kept > 10:
                await keep_alive()
                last_kept = now
            await asyncio.sleep(min(0.2, max(0.01, self.open_until - now)))

    def success(self) -> None:
        self.failures, self.open_until, self.probing = 0, 0.0, False

    def failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            if not self.open_until:
                log.warning("webhook circuit opened", extra={"failures": self.failures})
            self.open_until = time.monotonic() + self.cooldown_s
        self.probing = False


class RateLimit:
    """A token bucket: `rate` deliveries per second, bursts of up to one second's worth."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


# --- the delivery log, written in batches ------------------------------------------------------


class DeliveryLog:
    """Attempts are written many per transaction, and only then settled on the stream
    (ack, nak, term): an attempt that is on the stream's books is in the log."""

    def __init__(self, db: Database):
        self.db = db
        self.pending: list[tuple[dict[str, Any], Callable[[], Awaitable[None]] | None]] = []
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, row: dict[str, Any], settle: Callable[[], Awaitable[None]] | None) -> None:
        self.pending.append((row, settle))
        self.idle.clear()
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            try:
                async with transaction(self.db.writer) as session:
                    await repository.record(session, [row for row, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the deliveries happened: settle them anyway
                log.error("webhook delivery log not written", extra={"error": repr(exc), "rows": len(batch)})
            for _, settle in batch:
                if settle is not None:
                    try:
                        await settle()
                    except Exception as exc:  # noqa: BLE001 - the stream redelivers it: at least once
                        log.warning("webhook settle failed", extra={"error": repr(exc)})
            if not self.pending:
                self.idle.set()


_LINGERING: set[asyncio.Task[None]] = set()


@dataclass
class Delivery:
    """A message a worker is delivering; settled once it is the log's to ack, nak or term."""

    msg: Msg
    settled: bool = False


async def _give_back(msg: Msg) -> None:
    try:
        await msg.nak()
    except Exception:  # noqa: BLE001 - it comes back after ack_wait anyway
        pass


async def _unsubscribe_later(subscription: Any, after_s: float) -> None:
    try:
        await asyncio.sleep(after_s)
        await subscription.unsubscribe()
    except Exception:  # noqa: BLE001 - closing (the connection may be gone already)
        pass
    finally:
        _LINGERING.discard(asyncio.current_task())


# --- a subscription's worker -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What a worker needs of its subscription row (a change of the row restarts it)."""

    id: str
    partner_id: str | None
    url: str
    pii: bool
    subjects: tuple[str, ...]
    rate_limit: float | None
    signer: Signer
    failing_since: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookSubscription) -> Snapshot:
        return cls(
            row.id,
            row.partner_id,
            row.url,
            row.pii,
            tuple(filters.subjects(row.event_types)),
            row.rate_limit,
            Signer(row.secret, row.previous_secret, row.previous_secret_expires_at),
            row.failing_since,
            row.updated_at,
        )


def event_facts(body: bytes) -> tuple[str, str, str | None]:
    event = orjson.loads(body)
    subject = event.get("subject")
    return str(event.get("id")), str(event.get("type")), subject if isinstance(subject, str) else None


def log_row(
    subscription_id: str,
    facts: tuple[str, str, str | None],
    sequence: int,
    number: int,
    attempt: Attempt,
    outcome: str,
    next_at: datetime | None,
) -> dict[str, Any]:
    """The delivery log's row for one attempt (`facts`: the event's id, type and subject)."""

    event_id, event_type, subject = facts
    return {
        "id": uuid7(),
        "subscription_id": subscription_id,
        "event_id": event_id,
        "event_type": event_type,
        "sequence": sequence,
        "customer_id": subject,
        "attempt": number,
        "outcome": outcome,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "response_body": attempt.body,
        "error": attempt.error,
        "next_attempt_at": next_at,
        "attempted_at": utc_now(),
    }


class Worker:
    def __init__(self, dispatcher: Dispatcher, sub: Snapshot):
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings
        self.sub = sub
        settings = self.settings
        self.in_flight = max(1, settings.webhook_in_flight)
        # Its own connections: a receiver that hangs ties up only its own pool.
        self.client = self.new_client(settings, self.in_flight)
        self.breaker = Breaker(settings.webhook_breaker_failures, settings.webhook_breaker_cooldown_s)
        self.limit = RateLimit(sub.rate_limit) if sub.rate_limit else None
        self.free = self.in_flight
        self.freed = asyncio.Event()
        # Each delivery in flight and its message: stop() gives back what is not settled,
        # including a delivery cancelled before it ran a line (its own code cannot).
        self.tasks: dict[asyncio.Task[None], Delivery] = {}
        self.loops: dict[str, asyncio.Task[None]] = {}
        # Disabled (410, failing days): deliver nothing more, even before the dispatcher stops it.
        self.halted = False

    @staticmethod
    def new_client(settings: NetworkSettings, connections: int) -> aiohttp.ClientSession:
        """The worker's own HTTP client. aiohttp rather than httpx (the suite's client elsewhere):
        on the shared 2-core machine httpx made 110-280 POSTs/s to a local receiver, aiohttp
        about 2,000/s (docs/benchmarks.md, "Webhooks"), and the target is 1,000 webhooks/s."""

        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=10, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=settings.webhook_connect_timeout_s + settings.webhook_read_timeout_s,  # incl. the pool wait
                sock_connect=settings.webhook_connect_timeout_s,
                sock_read=settings.webhook_read_timeout_s,
            ),
            headers={"User-Agent": "ValueChainCRM-Webhooks/1", "Content-Type": "application/json"},
            auto_decompress=False,
            raise_for_status=False,
        )

    def start(self) -> None:
        self.loops["main"] = asyncio.create_task(self.pull(streams.consumer_name(self.sub.id), replay=False))
        self.loops["probe-replay"] = asyncio.create_task(self._resume_replay())

    async def _resume_replay(self) -> None:
        js = await self.dispatcher.js()
        if await streams.info(js, streams.replay_name(self.sub.id), self.settings) is not None:
            self.replay()

    def replay(self) -> None:
        loop = self.loops.get("replay")
        if loop is None or loop.done():
            self.loops["replay"] = asyncio.create_task(self.pull(streams.replay_name(self.sub.id), replay=True))

    async def stop(self) -> None:
        deliveries = list(self.tasks.values())
        everything = [*self.loops.values(), *self.tasks]
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        # Not settled: someone else's turn, at once (held, it would wait out ack_wait, 80 s).
        await asyncio.gather(*(_give_back(d.msg) for d in deliveries if not d.settled))
        await self.client.close()

    # --- pulling ---

    async def pull(self, consumer: str, *, replay: bool) -> None:
        bus = self.dispatcher.runtime.bus
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        stopped = False

        async def enqueue(msg: Msg) -> None:
            if not stopped:
                queue.put_nowait(msg)
            elif JetStreamContext.is_status_msg(msg) is None:
                await _give_back(msg)  # a pull still open when the worker stopped: not ours

        await bus.connected.wait()
        nc = bus.nc
        assert nc is not None
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox, cb=enqueue)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.settings.stream}.{consumer}"
        expires = REPLAY_PULL_EXPIRES_S if replay else PULL_EXPIRES_S
        closed = False
        try:
            while True:
                try:
                    await bus.connected.wait()
                    while self.free <= 0 or self.breaker.state == "open" or self.halted:
                        self.freed.clear()
                        # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a
                        # cancellation that lands as its timeout fires, and this loop (a halted
                        # worker's) then never ends: stop() waited for it for ever.
                        try:
                            async with asyncio.timeout(0.2):
                                await self.freed.wait()
                        except TimeoutError:
                            pass
                    # The slots asked for are reserved (the replay's loop shares them), and what
                    # the request did not bring is given back when it ends.
                    asked = self._share()
                    self.free -= asked
                    owed = [asked]
                    try:
                        request = orjson.dumps({"batch": asked, "expires": int(expires * 1e9)})
                        await nc.publish(next_subject, request, reply=inbox)
                        status = await self._drain(queue, owed, expires)
                    finally:
                        self.free += owed[0]
                        self.freed.set()
                    # A loop waiting for slots takes its turn now: without this yield the loop
                    # that just gave its slots back took them all again at once.
                    await asyncio.sleep(0)
                    if status == "503":  # no such consumer (deleted, or not made yet)
                        if replay:
                            return
                        await asyncio.sleep(1.0)
                    elif replay and status in ("404", "408", None) and await self._replay_done(consumer):
                        return
                    elif status == "409":  # the server refused the request (e.g. too many waiting)
                        await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep delivering whatever went wrong
                    log.warning("webhook pull loop error", extra={"subscription": self.sub.id, "error": repr(exc)})
                    await asyncio.sleep(1.0)
        except GeneratorExit:
            # Closed, never cancelled: the garbage collector after the event loop ended. No loop is
            # left to give messages back on or to unsubscribe later; ack_wait returns them.
            closed = True
            raise
        finally:
            # What arrived but was not taken goes back at once (not after ack_wait), and so does
            # what the open pull request still brings until it expires.
            stopped = True
            if not closed:
                while not queue.empty():
                    msg = queue.get_nowait()
                    if JetStreamContext.is_status_msg(msg) is None:
                        await _give_back(msg)
                _LINGERING.add(asyncio.create_task(_unsubscribe_later(subscription, expires + 1.0)))

    def _share(self) -> int:
        """The slots one pull request asks for: every free one, or half of them (at least one)
        while the live loop and a replay both run. The live loop's long pull of an idle
        subscription (PULL_EXPIRES_S) used to hold every slot and take them all back the
        moment it ended, so a replay waited for a live event that might never come."""

        running = [loop for name in ("main", "replay") if (loop := self.loops.get(name)) and not loop.done()]
        return self.free if len(running) < 2 else max(1, self.free // 2)

    async def _drain(self, queue: asyncio.Queue[Msg], owed: list[int], expires: float) -> str | None:
        """Start a delivery for each message the open pull request brings, until it has brought
        `owed[0]` (counted down) or ended; returns the status that ended it, if one did."""

        deadline = time.monotonic() + expires + 1.0
        while owed[0] > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):  # not wait_for: see pull()
                    msg = await queue.get()
            except TimeoutError:
                return None
            status = JetStreamContext.is_status_msg(msg)
            if status is None:
                owed[0] -= 1
                self.spawn(msg)
            elif status != "100":
                return status
        return None

    def spawn(self, msg: Msg) -> None:
        """Start delivering a message the pull brought."""

        delivery = Delivery(msg)
        task = asyncio.create_task(self.deliver(delivery))
        self.tasks[task] = delivery
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        self.free += 1
        self.freed.set()

    async def _replay_done(self, consumer: str) -> bool:
        js = await self.dispatcher.js()
        info = await streams.info(js, consumer, self.settings)
        if info is None:
            return True
        if info.num_pending or info.num_ack_pending or self.tasks:
            return False
        await js.delete_consumer(self.settings.stream, consumer)
        log.info("webhook replay finished", extra={"subscription": self.sub.id})
        return True

    # --- delivering one message ---

    async def deliver(self, delivery: Delivery) -> None:
        """One message: attempted and settled, or given back (by stop() when cut short)."""

        msg = delivery.msg
        body = public_event(msg.data, pii=self.sub.pii)
        if body is None:  # not public (a dead letter): nothing to deliver
            delivery.settled = True
            await msg.ack()
            return
        meta = msg.metadata
        attempt_number = meta.num_delivered
        if self.limit is not None:
            await self.limit.take()
        await self.breaker.admit(msg.in_progress)
        if self.halted:
            delivery.settled = True
            # Shielded: a halted worker is about to be stopped, and a nak cut short by that
            # stop leaves the message held until ack_wait (80 s) runs out.
            await asyncio.shield(_give_back(msg))
            return
        facts = event_facts(body)
        attempt = await self.dispatcher.attempt(self.sub, self.client, body, facts[0])
        delivery.settled = True
        await self._settle(msg, facts, meta.sequence.stream, attempt_number, attempt)

    async def _settle(
        self, msg: Msg, facts: tuple[str, str, str | None], sequence: int, number: int, attempt: Attempt
    ) -> None:
        schedule = self.settings.webhook_retry_schedule_s
        settle: Callable[[], Awaitable[None]]
        next_at = None
        outcome = attempt.outcome
        if outcome == "delivered":
            self.breaker.success()
            settle = msg.ack
        elif outcome == "aborted":
            self.breaker.success()  # the receiver is alive and answered on purpose
            settle = msg.term
        elif outcome == "gone":
            self.halted = True
            settle = msg.nak  # kept for when it is enabled again
        else:
            self.breaker.failure()
            if number > len(schedule):
                outcome, settle = "exhausted", msg.term
            else:
                delay = attempt.retry_after_s
                if delay is None:
                    jitter = self.settings.webhook_retry_jitter
                    delay = schedule[number - 1] * random.uniform(1 - jitter, 1 + jitter)
                delay = min(delay, self.settings.webhook_max_retry_after_s)
                next_at = utc_now() + timedelta(seconds=delay)
                settle = functools.partial(msg.nak, delay=delay)
        self.dispatcher.log.add(log_row(self.sub.id, facts, sequence, number, attempt, outcome, next_at), settle)
        # Only then the subscription's state (disabling stops this worker).
        if outcome == "delivered":
            await self.dispatcher.recovered(self.sub)
        elif outcome == "gone":
            await self.dispatcher.disable(self.sub, "gone", "the endpoint answered 410 Gone")
        elif attempt.failed:
            await self.dispatcher.failing(self.sub)


# --- every worker of the process -----------------------------------------------------------


class Dispatcher:
    """Runs a worker per enabled subscription, kept in step with the table."""

    def __init__(self, runtime: Runtime[Any]):
        self.runtime = runtime
        self.settings: NetworkSettings = runtime.settings  # type: ignore[assignment]
        self.guard = Guard(AllowList.of(self.settings.webhook_allow_hosts))
        self.log = DeliveryLog(runtime.db)
        self.workers: dict[str, Worker] = {}
        self.wake = asyncio.Event()
        self.synced = False
        # Deleted subscriptions whose consumers NATS did not delete then: retried at each look.
        self._undeleted: set[str] = set()
        # subscription id -> when it started failing, as this process last wrote it
        self._failing: dict[str, datetime | None] = {}

    async def js(self) -> JetStreamContext:
        await self.runtime.bus.connected.wait()
        assert self.runtime.bus.js is not None
        return self.runtime.bus.js

    def changed(self, replay: str | None = None) -> None:
        """A subscription changed (committed): look again now, not at the next refresh."""

        if replay is not None and replay in self.workers:
            self.workers[replay].replay()
        self.wake.set()

    async def run(self) -> None:
        writer = asyncio.create_task(self.log.run(), name="webhook-log")
        try:
            while True:
                try:
                    await self._reconcile()
                except Exception as exc:  # noqa: BLE001 - try again at the next refresh
                    log.warning("webhook reconcile failed", extra={"error": repr(exc)})
                try:
                    async with asyncio.timeout(self.settings.webhook_refresh_s):  # not wait_for: see Worker.pull()
                        await self.wake.wait()
                except TimeoutError:
                    pass
                self.wake.clear()
        finally:
            workers = list(self.workers.values())
            self.workers.clear()
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _still_there(self, subscription_id: str) -> bool:
        async with self.runtime.db.reader() as session:
            return await repository.read(session, subscription_id) is not None

    async def delete_consumers(self, subscription_id: str) -> None:
        """A deleted subscription's consumers (its removal committed). When NATS fails to
        delete them, the subscription stays deleted and each look tries again."""

        self._undeleted.add(subscription_id)
        if not await self._delete_undeleted(subscription_id):
            self.wake.set()

    async def _delete_undeleted(self, subscription_id: str) -> bool:
        try:
            await streams.delete(await self.js(), subscription_id, self.settings)
        except Exception as exc:  # noqa: BLE001 - NATS trouble: retried at the next look
            log.warning(
                "webhook consumer not deleted, will retry", extra={"subscription": subscription_id, "error": repr(exc)}
            )
            return False
        self._undeleted.discard(subscription_id)
        return True

    async def _reconcile(self) -> None:
        for subscription_id in list(self._undeleted):
            await self._delete_undeleted(subscription_id)
        async with self.runtime.db.reader() as session:
            rows = await repository.everything(session)
        if not self.synced:
            # Types added to the catalog since a wildcard subscription was made join it now.
            js = await self.js()
            for row in rows:
                subjects = filters.subjects(row.event_types)
                if not await streams.refilter(js, row.id, subjects, self.settings):
                    if not await self._still_there(row.id):  # deleted since the read: its consumer too
                        continue
                    # NATS lost its store (what it held is gone with it): deliver from now on.
                    log.error("webhook consumer missing, made again", extra={"subscription": row.id})
                    await streams.create(js, row.id, subjects, self.settings)
            self.synced = True
        wanted = {row.id: row for row in rows if row.enabled}
        for sub_id in list(self.workers):
            kept = wanted.get(sub_id)
            if kept is None or kept.updated_at != self.workers[sub_id].sub.updated_at:
                await self.workers.pop(sub_id).stop()
        for sub_id, row in wanted.items():
            if sub_id not in self.workers:
                snapshot = Snapshot.of(row)
                self._failing[sub_id] = row.failing_since
                worker = Worker(self, snapshot)
                self.workers[sub_id] = worker
                worker.start()

    async def attempt(self, sub: Snapshot, client: aiohttp.ClientSession, body: bytes, event_id: str) -> Attempt:
        refused = await self.guard.refused(sub.url)
        if refused is not None:
            return Attempt("refused", error=f"url_not_allowed: {refused}"[:500])
        return await post(client, sub.url, body, sub.signer.headers(event_id, body, utc_now()))

    async def retry(self, row: WebhookSubscription, raw: bytes, sequence: int, number: int) -> dict[str, Any]:
        """Deliver one stream message now, once, outside its schedule (an operator's retry),
        and log the attempt; returns the log row."""

        body = public_event(raw, pii=row.pii)
        assert body is not None, "a logged delivery was public"
        facts = event_facts(body)
        worker = self.workers.get(row.id)
        if worker is not None:
            attempt = await self.attempt(worker.sub, worker.client, body, facts[0])
        else:
            client = Worker.new_client(self.settings, 1)
            async with client:
                attempt = await self.attempt(Snapshot.of(row), client, body, facts[0])
        logged = log_row(row.id, facts, sequence, number, attempt, attempt.outcome, None)
        async with transaction(self.runtime.db.writer) as session:
            await repository.record(session, [logged])
        return logged

    # --- the subscription's state ---

    async def failing(self, sub: Snapshot) -> None:
        now = utc_now()
        since = self._failing.get(sub.id)
        if since is None:
            self._failing[sub.id] = now
            async with transaction(self.runtime.db.writer) as session:
                await repository.set_state(session, sub.id, failing_since=now)
            return
        if now - since >= timedelta(days=self.settings.webhook_disable_after_days):
            worker = self.workers.get(sub.id)
            if worker is not None:
                worker.halted = True
            detail = f"every delivery failed since {since.isoformat()}"
            await self.disable(sub, "failing", detail)

    async def recovered(self, sub: Snapshot) -> None:
        if self._failing.get(sub.id) is not None:
            self._failing[sub.id] = None
            async with transaction(self.runtime.db.writer) as session:
                await repository.set_state(session, sub.id, failing_since=None)

    async def disable(self, sub: Snapshot, reason: str, detail: str) -> None:
        """Disable the subscription (once) and say so with crm.network.webhook.disabled."""

        now = utc_now()
        async with transaction(self.runtime.db.writer) as session:
            row = await repository.read(session, sub.id)
            if row is None or not row.enabled:
                return
            row.enabled, row.disabled_reason, row.updated_at = False, f"{reason}: {detail}", now
            await session.flush()
            emit(
                session,
                "crm.network.webhook.disabled",
                {"id": sub.id, "reason": reason, "detail": detail, "disabled_at": now},
            )
        log.warning("webhook subscription disabled", extra={"subscription": sub.id, "reason": reason})
        self.wake.set()


async def start(runtime: Runtime[Any]) -> None:
    """network's start hook: the dispatcher runs as long as the service."""

    dispatcher = runtime.state.webhooks
    runtime.start_leased("webhooks", dispatcher.run)  # one replica delivers; another takes over
