"""CloudEvents 1.0 envelopes in structured JSON mode.

`type` equals the NATS subject (`crm.<service>.<aggregate>.<event>`), `subject`
is the customer id where there is one, and two extension attributes carry the
correlation id of the request that started the chain and the id of the event
that caused this one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared import context

SPECVERSION = "1.0"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: str = SPECVERSION
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes) -> "CloudEvent":
        return cls.model_validate_json(raw)


def make_event(
    *,
    service: str,
    type: str,
    data: dict[str, Any],
    subject: str | None = None,
    dataschema: str | None = None,
) -> CloudEvent:
    event_id = context.new_id()
    # Every field is already of its type: skipping validation saves ~4 µs of the
    # ~15 µs an emitted event cost (felt by the consumers that emit per event).
    return CloudEvent.model_construct(
        id=event_id,
        source=f"/valuechain/{service}",
        type=type,
        time=datetime.now(timezone.utc),
        subject=subject,
        dataschema=dataschema,
        correlationid=context.correlation_id.get() or event_id,
        causationid=context.causation_id.get(),
        data=data,
    )
