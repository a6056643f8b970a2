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
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.events.bus import Bus

YIELD_EVERY = 200  # messages between turns of the event loop (~1.5 ms of publishing)
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
        self._nc: Client | None = None
        self._prefix = ""
        self._batch = 0
        self._waiting: set[str] = set()
        self._failures: list[str] = []
        self._acked = asyncio.Event()
        self._one_batch = asyncio.Lock()  # the ack bookkeeping is of one batch at a time
        self._subjects: dict[str, bytes] = {}

    async def publish(self, messages: Sequence[tuple[str, bytes, str]], *, timeout_s: float) -> None:
        """Publish (subject, body, message id) in order; return once the stream has stored every one."""

        if not messages:
            return
        async with self._one_batch:
            await self._publish(messages, timeout_s)

    async def _publish(self, messages: Sequence[tuple[str, bytes, str]], timeout_s: float) -> None:
        nc = self.bus.nc
        if nc is None or not nc.is_connected:
            raise ConnectionError("NATS is not connected")
        if nc is not self._nc:  # first use, or a new connection object
            self._prefix = nc.new_inbox() + "."
            await nc.subscribe(self._prefix + "*", cb=self._on_ack)
            self._nc = nc
        self._batch += 1
        tag = f"{self._prefix}{self._batch}-"  # acks of an earlier, abandoned batch match no token
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
            if not nc.is_connected:  # acks of a dropped connection never come
                raise ConnectionError(f"NATS connection lost with {len(self._waiting)} of {count} unacknowledged")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self._waiting)} of {count} publishes not acknowledged")
            try:  # asyncio.timeout: Python 3.11's wait_for can lose a cancellation (stop would hang)
                async with asyncio.timeout(min(left, 0.25)):
                    await self._acked.wait()
            except TimeoutError:
                pass

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
