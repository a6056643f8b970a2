"""CloudEvents 1.0 envelopes in structured JSON mode.

`type` equals the NATS subject (`crm.<service>.<aggregate>.<event>`), `subject`
is the customer id where there is one, and two extension attributes carry the
correlation id of the request that started the chain and the id of the event
that caused this one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.observability import context

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
    def from_json(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


P = TypeVar("P", bound=BaseModel)


class Event(CloudEvent, Generic[P]):
    """An event as a consumer's handler gets it: the envelope, and `data` parsed by its
    contract's reader, envelope and payload in one pass over the JSON.

    Each contract makes its own subclass (shared/events/contracts.py `Contract.event_model`)
    saying which payload fields name the customers the event is about (the subject
    first), which name other customers it mentions, and which says when it happened.
    """

    data: P  # type: ignore[assignment]

    customers: ClassVar[tuple[str, ...]] = ()
    other_customers: ClassVar[tuple[str, ...]] = ()
    at_field: ClassVar[str | None] = None

    @property
    def at(self) -> datetime:
        """When it happened: the contract's time field, else the envelope's `time` (aware, UTC)."""

        at = getattr(self.data, self.at_field) if self.at_field else None
        if at is None:
            at = self.time
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)

    @property
    def customer_id(self) -> str | None:
        """The customer the event is about, if it is about one."""

        return getattr(self.data, self.customers[0]) if self.customers else None

    def customer_ids(self) -> list[str]:
        """The customers the event is about."""

        return [cid for name in self.customers if (cid := getattr(self.data, name)) is not None]

    def named_ids(self) -> list[str]:
        """Every customer the payload names."""

        fields = (*self.customers, *self.other_customers)
        return [cid for name in fields if (cid := getattr(self.data, name)) is not None]

    def for_survivors(self, survivor: dict[str, str]) -> Event[P]:
        """This event with each merged customer it names replaced by its survivor."""

        fields = (*self.customers, *self.other_customers)
        moved = {name: survivor[cid] for name in fields if (cid := getattr(self.data, name)) in survivor}
        return self.model_copy(update={"data": self.data.model_copy(update=moved)}) if moved else self


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
        time=datetime.now(UTC),
        subject=subject,
        dataschema=dataschema,
        correlationid=context.correlation_id.get() or event_id,
        causationid=context.causation_id.get(),
        data=data,
    )
