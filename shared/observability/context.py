"""Request and correlation ids, carried in context variables.

The correlation id enters with an HTTP request (or is minted there), goes into
every event the request causes, and is restored from an event while a consumer
handles it, so the events a handler emits carry it on.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# The id of the event being handled right now, so events it causes name their cause.
causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


def new_id() -> str:
    return str(uuid.uuid4())
