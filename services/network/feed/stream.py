"""Pages of the JetStream stream `CRM`, read with batched direct gets (the feed's data access).

One request to `$JS.API.DIRECT.GET.CRM` with `{"seq": n, "batch": b}` answers with up to
`b` stored messages from sequence `n` on, in order, then an end-of-batch status (204 EOB,
with `Nats-Num-Pending`). No consumer is created, so nothing is left behind and any
number of feed readers may read at once; sequences an erasure deleted or that are
past the stream's retention are simply not there. Reading one message per request
(`js.get_msg`) costs a round trip each; a batch of a thousand costs one (docs/benchmarks.md).

network's NATS user may publish exactly the direct-get and stream-info requests of the
stream (shared/nats_auth.py `STREAM_READERS`), and receives on its own inbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

# One batch's answer is at most this many bytes (the server stops early): a page of large events stays bounded.
MAX_BATCH_BYTES = 8 * 1024 * 1024
TIMEOUT_S = 5.0


class StreamUnavailable(Exception):
    """NATS did not answer the read (not connected, no stream, a timeout)."""


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
