"""The event feed's rules: which events a caller gets from where, and where the next page starts.

A cursor is the stream sequence of the last message a page covered, as a decimal
string: the stream's own numbering, so it survives restarts of network, and WEBHOOKS'
replays take the same one. A page covers messages the caller does not get (dead letters,
types it did not ask for or may not see, sequences an erasure removed) without
showing them: the cursor moves past them all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.network.feed import stream
from shared.events.public import PUBLIC_TYPES, UnknownEventType, nats_subject, public_event_on, types_matching
from shared.http.caller import TypeNotAllowed
from shared.http.errors import AppError, Conflict, field_error

# At most this many stream messages are looked at for one page: a filter that matches
# little answers a short (even empty) page with a cursor past what was looked at, and
# the client asks again at once (`has_more`), instead of one request scanning the stream.
MAX_SCAN = 20_000
BATCH = 1000


class FeedUnavailable(AppError):
    status_code = 503
    error = "unavailable"


class CursorExpired(Conflict):
    """409 `cursor_expired`: the detail says why, `oldest_cursor` where to start again (webhook
    replays answer the same)."""

    error = "cursor_expired"

    def __init__(self, detail: str, *, oldest_cursor: int):
        super().__init__(detail)
        self.oldest_cursor = str(oldest_cursor)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "oldest_cursor": self.oldest_cursor}


def narrow(patterns: list[str], allowed: frozenset[str] | None) -> tuple[frozenset[str] | None, str | None]:
    """The types a caller limited to `allowed` (None: every public type) reads when it asks for
    `patterns` (none: all it may), and the NATS subject filter that reads just those, if one does.

    Asking for more than the key may see narrows to what it may; asking only outside it is 403."""

    if not patterns:
        return allowed, None
    asked: set[str] = set()
    for pattern in patterns:
        try:
            asked |= types_matching(pattern)
        except UnknownEventType as exc:
            raise field_error("query.types", str(exc)) from None
    wanted = asked if allowed is None else asked & allowed
    if not wanted:
        raise TypeNotAllowed(f"this key may not read {', '.join(patterns)}")
    # One pattern, all of it allowed: the server filters (the types a pattern matches are its subjects).
    subject = nats_subject(patterns[0]) if len(patterns) == 1 and wanted == asked else None
    return frozenset(wanted), subject


@dataclass(frozen=True, slots=True)
class FeedPage:
    items: list[tuple[int, bytes]]  # (stream sequence, public CloudEvent JSON)
    next_cursor: int
    has_more: bool

    def json(self) -> bytes:
        """The page as the API answers it, without parsing the events again."""

        events = b",".join(b'{"cursor":"%d","event":%s}' % (seq, event) for seq, event in self.items)
        more = b"true" if self.has_more else b"false"
        return b'{"items":[%s],"next_cursor":"%d","has_more":%s}' % (events, self.next_cursor, more)


async def page(
    *,
    nc: NATS,
    js: JetStreamContext,
    stream_name: str,
    after: int,
    limit: int,
    types: frozenset[str] | None,
    subject: str | None,
    pii: bool,
) -> FeedPage:
    """Up to `limit` public events after sequence `after`, of `types` (None: every public type).

    `subject` narrows the read on the server (a NATS filter covering `types`) when one does.
    409 `cursor_expired` when `after` lies before the oldest event the stream still keeps.
    """

    wanted = PUBLIC_TYPES if types is None else types
    items: list[tuple[int, bytes]] = []
    position = after
    scanned = 0
    pending = 1
    first: int | None = None
    while len(items) < limit and pending and scanned < MAX_SCAN:
        try:
            batch = await stream.read_batch(nc, stream_name, start=position + 1, batch=BATCH, subject=subject)
        except stream.StreamUnavailable as exc:
            raise FeedUnavailable(f"the event stream cannot be read now: {exc}") from None
        pending = batch.pending
        if not batch.messages:
            break
        if first is None:
            first = batch.messages[0].seq
        for message in batch.messages:
            scanned += 1
            position = message.seq
            if message.subject in wanted:
                event = public_event_on(message.subject, message.data, pii=pii)
                if event is not None:
                    items.append((message.seq, event))
                    if len(items) == limit:
                        break
        if len(items) == limit and position != batch.messages[-1].seq:
            pending = 1  # the page ended inside the batch: more after it
    if after > 0 and (first is None or first > after + 1):
        # Something is missing right after the cursor: filtered, erased, or aged out?
        await _check_kept(js, stream_name, after)
    return FeedPage(items, position, has_more=pending > 0)


async def _check_kept(js: JetStreamContext, stream_name: str, after: int) -> None:
    try:
        kept = await stream.state(js, stream_name)
    except stream.StreamUnavailable as exc:
        raise FeedUnavailable(f"the event stream cannot be read now: {exc}") from None
    oldest = kept.first_seq - 1  # the cursor that reads from the oldest event kept
    if after < oldest:
        raise CursorExpired(
            f"cursor {after} is older than the stream keeps: the oldest available cursor is {oldest}",
            oldest_cursor=oldest,
        )
    if after > kept.last_seq:
        raise CursorExpired(
            f"cursor {after} is beyond the stream's last event ({kept.last_seq}): the stream was reset; "
            f"start again from the oldest available cursor {oldest}",
            oldest_cursor=oldest,
        )
