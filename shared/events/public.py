"""The events partner systems see: the public CloudEvent of a stream message.

Webhook deliveries and the pollable feed (`GET /v1/events`) send the same bytes for
the same event and caller: the CloudEvent as it was published, with its personal
fields (the contracts' `Personal` marks) nulled for a caller without `pii:read`.
Dead letters and any type the catalog does not know are never public.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.events.contracts import CATALOG, DeadLetter
from shared.privacy.scrub import scrub_data

# Every type a partner may subscribe to or read from the feed.
PUBLIC_TYPES: frozenset[str] = frozenset(t for t, c in CATALOG.items() if c.model is not DeadLetter)


def public_event(raw: bytes, *, pii: bool) -> bytes | None:
    """The public CloudEvent JSON of the stream message `raw`; None when it is not public."""

    try:
        event: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    contract = CATALOG.get(str(event.get("type")))
    if contract is None or contract.model is DeadLetter:
        return None
    data = event.get("data")
    if pii or not isinstance(data, dict) or not scrub_data(contract, data):
        return raw
    return orjson.dumps(event)
