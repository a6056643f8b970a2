"""Pages of the JetStream stream `CRM`, read with batched direct gets (the feed's data access).

One request to `$JS.API.DIRECT.GET.CRM` with `{"seq": n, "batch": b}` answers with up to
`b` stored messages from sequence `n` on, in order, then an end-of-batch status (204 EOB,
with `Nats-Num-Pending`). No consumer is created, so nothing is left behind and any
number of feed readers may read at once; sequences an erasure deleted or that are
past the stream's retention are simply not there. Reading one message per request
(`js.get_msg`) costs a round trip each; a batch of a thousand costs one (docs/benchmarks.md).

network's NATS user may publish exactly the direct-get and stream-info requests of the
stream (shared/nats_auth.py `STREAM_READERS`), and receives on its own inbox.

The feed reads over a connection of its own (`FeedConnection`, one per network process,
opened at the first read, closed when the service stops), made by `FeedClient`: each
message of a direct get carries seven header lines, and nats-py's general header parser
was a third of the feed's CPU time (15 µs of CPU per event read; 10 µs with the lean
parser below, measured in-process over 20,000 events: docs/benchmarks.md, "Event feed").
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.events.bus import Bus
from shared.service.runtime import Runtime

log = logging.getLogger("valuechain.network.feed")

# One batch's answer is at most this many bytes (the server stops early): a page of large events stays bounded.
MAX_BATCH_BYTES = 8 * 1024 * 1024
TIMEOUT_S = 5.0


class StreamUnavailable(Exception):
    """NATS did not answer the read (not connected, no stream, a timeout)."""


_STATUS_LINE = b"NATS/1.0 "  # a status (204 EOB, 404, 408, 503): nats-py's own parser reads it
_HEADERS = len(b"NATS/1.0\r\n")


class FeedClient(NATS):
    """A nats-py client whose header parser reads the plain `Name: value` lines the server
    writes on stored messages in a third less time than nats-py's general one (which also
    tolerates folded or malformed lines). Anything else (a status line, a name with spaces,
    bytes that are not UTF-8) goes to nats-py's own parser, so the result is the same."""

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        if not headers or headers.startswith(_STATUS_LINE):
            return await super()._process_headers(headers)
        out: dict[str, str] = {}
        try:
            for line in headers[_HEADERS:].split(b"\r\n"):
                if line:
                    name, sep, value = line.partition(b":")
                    if not sep or b" " in name or b"\t" in name:
                        return await super()._process_headers(headers)
                    out[name.decode("ascii")] = value.strip().decode("utf-8")
        except UnicodeDecodeError:
            return await super()._process_headers(headers)
        return out or None


class FeedConnection:
    """The feed's own NATS connection for one network process (its `Bus`'s user and options)."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.nc: FeedClient | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> FeedClient:
        nc = self.nc
        if nc is not None and not nc.is_closed:
            return nc
        if not self.bus.is_connected:
            raise StreamUnavailable("not connected to NATS")
        async with self._lock:
            if self.nc is None or self.nc.is_closed:
                fresh = FeedClient()
                options: dict[str, Any] = {**self.bus.connect_options(), "name": f"{self.bus.name}-feed"}
                try:
                    await asyncio.wait_for(fresh.connect(self.bus.url, error_cb=_quiet, **options), TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001 - any failure: the feed is unavailable for now
                    raise StreamUnavailable(f"cannot connect to NATS: {exc!r}") from None
                self.nc = fresh
            return self.nc

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    log.debug("feed connection error", extra={"error": repr(exc)})


_connections: weakref.WeakKeyDictionary[Bus, FeedConnection] = weakref.WeakKeyDictionary()


def connection(bus: Bus) -> FeedConnection:
    """The feed's connection of the process whose connection is `bus`."""

    found = _connections.get(bus)
    if found is None:
        found = _connections[bus] = FeedConnection(bus)
    return found


async def start(runtime: Runtime[Any]) -> None:
    """network's start hook: the feed's connection is closed with the service's tasks."""

    runtime.tasks.append(asyncio.create_task(_close_when_stopped(runtime.bus), name="feed-connection"))


async def _close_when_stopped(bus: Bus) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        found = _connections.pop(bus, None)
        if found is not None:
            await found.close()


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    subject: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    messages: list[Stored]
    # Messages after the last one returned (matching the subject filter): 0 at the stream's end.
    pending: int


@dataclass(frozen=True, slots=True)
class StreamState:
    first_seq: int
    last_seq: int


async def read_batch(
    nc: NATS, stream: str, *, start: int, batch: int, subject: str | None = None, timeout: float = TIMEOUT_S
) -> Batch:
    """Up to `batch` stored messages from sequence `start` on (only `subject`'s, a NATS
    filter, when given), in stream order."""

    messages: list[Stored] = []
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def collect(msg: Msg) -> None:
        headers = msg.headers
        if done.done():
            return
        status = headers.get("Status") if headers else None
        if status is None and headers:
            messages.append(Stored(int(headers["Nats-Sequence"]), headers["Nats-Subject"], msg.data))
        elif status == "204":  # end of batch
            done.set_result(int(headers.get("Nats-Num-Pending", "0")) if headers else 0)
        elif status == "404":  # nothing at or after `start`
            done.set_result(0)
        else:
            done.set_exception(StreamUnavailable(f"direct get on {stream} answered {status}"))

    request: dict[str, object] = {"seq": max(start, 1), "batch": batch, "max_bytes": MAX_BATCH_BYTES}
    if subject is not None:
        request["next_by_subj"] = subject
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
        try:
            pending = await asyncio.wait_for(done, timeout)
        except TimeoutError:
            raise StreamUnavailable(f"no answer from stream {stream} within {timeout:g} s") from None
    finally:
        await sub.unsubscribe()
    return Batch(messages, pending)


async def state(js: JetStreamContext, stream: str) -> StreamState:
    """The stream's first and last sequence (what retention and erasures left)."""

    try:
        info = await js.stream_info(stream)
    except Exception as exc:  # noqa: BLE001 - any failure: the feed cannot say where the stream begins
        raise StreamUnavailable(f"stream {stream}: {exc!r}") from None
    return StreamState(first_seq=info.state.first_seq, last_seq=info.state.last_seq)
