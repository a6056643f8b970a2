"""Publishing a batch of messages to JetStream, each acknowledged by the stream.

nats-py's `publish_async` makes a future, a done-callback and a JSON-decoded ack
object per message: about 19 µs of CPU per event on our 2-core machine, more than
building, storing and reading the event together. This publisher sends each
message with a reply subject under one wildcard subscription of its own and only
counts the acks as they arrive (7.7 µs per event in the same measurement; see
docs/benchmarks.md). It writes the HPUB frames itself, 200 to a buffer hand-over
(nats-py's publish() validates and builds one frame per call), through the
connection's own outbound buffer and flusher, as publish() does. Ordering is
unchanged: the messages go out in order on one connection, so the stream stores
them in order.

An ack that is not a JetStream PubAck (an error, or a "no responders" status when
no stream takes the subject) fails the batch; so do a timeout and a lost
connection. The caller retries the whole batch with the same `Nats-Msg-Id`s, and
JetStream's duplicate window drops what it had already stored.

A batch of `FAST_MIN` messages or more (an import's, a refit's, a sweep's) goes as one
JetStream fast-ingest batch (nats-server ≥ 2.14, a stream with `allow_batched`; ADR-50):
the server stores each message as it comes and acknowledges every `FAST_FLOW` of them
and the batch at its end, so there is no ack to read per message (1.3 µs of this
process's CPU per event instead of 5.2, docs/benchmarks.md "Stop 23"). The batch's
control is in each message's reply subject, `<inbox>.<batch id>.<flow>.fail.<n>.<op>.$FI`;
`fail`: the server abandons the batch at a missing message. nats-server 2.15 applies
`Nats-Msg-Id` deduplication to such batches, which the relay's retries rely on
(tests/shared/test_publisher.py holds it to that), though the ADR leaves it unsaid. A fast
batch that fails for any reason other than a timeout is published again one ack per
message, whose failures name the message; a server or stream without fast ingest is
noted once and its batches go one ack per message from then on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.events.bus import Bus

log = logging.getLogger("valuechain.publisher")

YIELD_EVERY = 200  # messages between turns of the event loop (~1.5 ms of publishing)
FAST_MIN = 32  # messages from which a batch goes as one fast-ingest batch
FAST_FLOW = 100  # the server acknowledges every this many messages of a fast batch
FAST_WINDOW = 2 * FAST_FLOW  # messages sent and not yet acknowledged before the publisher waits
_FAST_DISABLED = 10205  # "batch publish is disabled": the stream has no allow_batched
# A subject the relay publishes on: dot-separated tokens, nothing the protocol line could split on.
_SUBJECT = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,100}")


def _hpub(subject: bytes, reply: bytes, message_id: str, body: bytes, nc: Client) -> bytes:
    """One HPUB frame, as nats-py's publish() writes it with a Nats-Msg-Id header, built in one go."""

    if len(body) > nc.max_payload:
        raise PublishError(f"an event of {len(body)} bytes is over the server's {nc.max_payload}")
    if not _ID.fullmatch(message_id):
        raise PublishError(f"not an event id to send as Nats-Msg-Id: {message_id!r}")
    header = b"NATS/1.0\r\nNats-Msg-Id: " + message_id.encode() + b"\r\n\r\n"
    size = len(header)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject, reply, size, size + len(body), header, body)


async def _send(nc: Client, frames: list[bytes]) -> None:
    """Hand the frames to the connection's outbound buffer, as publish() does for one."""

    if not frames:
        return
    await nc._send_command(b"".join(frames))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


class PublishError(Exception):
    """The stream did not store a message of the batch."""


class BatchPublisher:
    def __init__(self, bus: Bus):
        self.bus = bus
        self._inboxes: dict[Callable[[Msg], Awaitable[None]], tuple[Client, str]] = {}
        self._batch = 0
        self._waiting: set[str] = set()
        self._failures: list[str] = []
        self._acked = asyncio.Event()
        self._one_batch = asyncio.Lock()  # the ack bookkeeping is of one batch at a time
        self._subjects: dict[str, bytes] = {}
        self.fast_ingest = True  # until the server or the stream turns out not to take it
        self.fast_batches = 0  # published as fast-ingest batches (for the tests and the curious)
        self._fast: _FastBatch | None = None

    async def publish(self, messages: Sequence[tuple[str, bytes, str]], *, timeout_s: float) -> None:
        """Publish (subject, body, message id) in order; return once the stream has stored every one."""

        if not messages:
            return
        async with self._one_batch:
            if len(messages) >= FAST_MIN and self.fast_ingest:
                try:
                    await self._publish_fast(messages, timeout_s)
                    self.fast_batches += 1
                    return
                except _FastBatchFailed as failed:  # the same batch one ack per message: its errors name them
                    if failed.unsupported:
                        self.fast_ingest = False
                        log.warning("fast-ingest batches not taken, publishing with an ack per message: %s", failed)
            await self._publish(messages, timeout_s)

    def _connected(self) -> Client:
        nc = self.bus.nc
        if nc is None or not nc.is_connected:
            raise ConnectionError("NATS is not connected")
        return nc

    async def _inbox(self, nc: Client, wildcard: str, reader: Callable[[Msg], Awaitable[None]]) -> str:
        """The prefix of the subjects `reader` takes replies on, subscribed once per connection
        (at first use, and again for a new connection object)."""

        held = self._inboxes.get(reader)
        if held is None or held[0] is not nc:
            held = self._inboxes[reader] = (nc, nc.new_inbox() + ".")
            await nc.subscribe(held[1] + wildcard, cb=reader)
        return held[1]

    async def _publish(self, messages: Sequence[tuple[str, bytes, str]], timeout_s: float) -> None:
        nc = self._connected()
        prefix = await self._inbox(nc, "*", self._on_ack)
        self._batch += 1
        tag = f"{prefix}{self._batch}-"  # acks of an earlier, abandoned batch match no token
        self._waiting = {f"{tag}{n}" for n in range(len(messages))}
        self._failures = []
        self._acked.clear()
        frames: list[bytes] = []
        reply = tag.encode()
        for n, (subject, body, message_id) in enumerate(messages):
            frames.append(_hpub(self._checked(subject, nc), reply + str(n).encode(), message_id, body, nc))
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await _send(nc, frames)
                frames = []
                await asyncio.sleep(0)  # sending only buffers: let the service's other work run
        await _send(nc, frames)
        await self._wait(nc, len(messages), timeout_s)
        if self._failures:
            raise PublishError(f"{len(self._failures)} of {len(messages)} not stored: {self._failures[0]}")

    async def _wait(self, nc: Client, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._acked.is_set():
            await _until(nc, self._acked, deadline, f"{len(self._waiting)} of {count} publishes not acknowledged")

    async def _publish_fast(self, messages: Sequence[tuple[str, bytes, str]], timeout_s: float) -> None:
        nc = self._connected()
        batch = self._fast = _FastBatch(await self._inbox(nc, ">", self._on_fast_frame))
        inbox = f"{batch.inbox}{FAST_FLOW}.fail.".encode()
        deadline = time.monotonic() + timeout_s
        frames: list[bytes] = []
        last = len(messages)
        for n, (subject, body, message_id) in enumerate(messages, 1):
            # op 0 starts the batch, 1 adds to it, 2 adds the last message and ends the batch (the
            # server answers it with the batch's ack). No message of its own ends it: a server
            # before 2.14 would store that as an event.
            op = 2 if n == last else 0 if n == 1 else 1
            reply = b"%s%d.%d.$FI" % (inbox, n, op)
            frames.append(_hpub(self._checked(subject, nc), reply, message_id, body, nc))
            if n - batch.acked >= FAST_WINDOW or n % YIELD_EVERY == 0:
                await _send(nc, frames)
                frames = []
                await asyncio.sleep(0)
                while n - batch.acked >= FAST_WINDOW and batch.ended is None:  # the server's pace
                    batch.progress.clear()
                    await _until(nc, batch.progress, deadline, f"fast batch: {n - batch.acked} unacknowledged")
        await _send(nc, frames)
        while batch.ended is None:
            batch.progress.clear()
            await _until(nc, batch.progress, deadline, f"fast batch of {len(messages)} not acknowledged")
        ended = batch.ended
        if ended.get("batch") != batch.id or ended.get("count") != len(messages) or "error" in ended:
            code = (ended.get("error") or {}).get("err_code")
            raise _FastBatchFailed(
                f"{orjson.dumps(batch.problem or ended)[:300]!r}",
                # a server before 2.14 answers a message as any publish: a PubAck, no batch
                unsupported=code == _FAST_DISABLED or ("batch" not in ended and "error" not in ended),
            )

    async def _on_fast_frame(self, msg: Msg) -> None:
        batch = self._fast
        if batch is None or not msg.subject.startswith(batch.inbox):
            return  # a late frame of an earlier batch
        try:
            frame = orjson.loads(msg.data)
        except orjson.JSONDecodeError:  # a status without a body ("no responders")
            frame = {"error": {"description": (msg.headers or {}).get("Status", "no body")}}
        kind = frame.get("type")
        if kind == "ack":  # stored through message `seq`
            batch.acked = max(batch.acked, int(frame.get("seq", 0)))
        elif kind in ("gap", "err"):  # the batch is abandoned: its end says so
            batch.problem = frame
            if (frame.get("error") or {}).get("err_code") == _FAST_DISABLED:
                batch.ended = frame
        else:  # the batch's own ack, or its failure
            batch.ended = frame
        batch.progress.set()

    def _checked(self, subject: str, nc: Client) -> bytes:
        """The subject as the protocol line's bytes, once it is known to be one NATS subject."""

        encoded = self._subjects.get(subject)
        if encoded is None:
            if not _SUBJECT.fullmatch(subject):
                raise PublishError(f"not a subject to publish on: {subject!r}")
            encoded = self._subjects[subject] = subject.encode()
        return encoded

    async def _on_ack(self, msg: Msg) -> None:
        if msg.subject not in self._waiting:
            return  # a late ack of an abandoned batch
        self._waiting.discard(msg.subject)
        data = msg.data
        # A PubAck is {"stream": ..., "seq": ...} (with "duplicate": true when deduplicated).
        if b'"seq"' not in data or b'"error"' in data:
            status = (msg.headers or {}).get("Status", "")
            self._failures.append(f"{status} {data[:300]!r}".strip())
        if not self._waiting:
            self._acked.set()


class _FastBatch:
    def __init__(self, prefix: str):
        self.id = uuid.uuid4().hex
        self.inbox = f"{prefix}{self.id}."  # its replies' subjects begin so (the server reads the id from it)
        self.acked = 0  # the server has stored the batch's messages up to this one
        self.ended: dict[str, Any] | None = None  # the server's last word on the batch
        self.problem: dict[str, Any] | None = None
        self.progress = asyncio.Event()


class _FastBatchFailed(Exception):
    def __init__(self, detail: str, *, unsupported: bool):
        super().__init__(detail)
        self.unsupported = unsupported


async def _until(nc: Client, event: asyncio.Event, deadline: float, timed_out: str) -> None:
    """Wait a while for the event, or raise at the deadline or when the connection is lost
    (what it would have brought never comes)."""

    if not nc.is_connected:
        raise ConnectionError(f"NATS connection lost: {timed_out}")
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(timed_out)
    try:  # asyncio.timeout: Python 3.11's wait_for can lose a cancellation (stop would hang)
        async with asyncio.timeout(min(left, 0.25)):
            await event.wait()
    except TimeoutError:
        pass
