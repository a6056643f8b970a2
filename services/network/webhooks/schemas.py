"""webhooks' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Strict, Text, single_line

Url = Annotated[
    str,
    Field(min_length=1, max_length=2000, description="https:// URL deliveries are POSTed to", **NOT_BLANK_SCHEMA),
    AfterValidator(single_line),
]
EventType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="A public event type, or a pattern in NATS subject syntax: `*` one token, a final `>` the rest "
        "(`crm.identify.customer.*`, `crm.>`)",
        json_schema_extra={"pattern": r"^[A-Za-z0-9_*>.-]+$"},
    ),
]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=100)]
RateLimit = Annotated[float, Field(gt=0, le=10_000, description="At most this many deliveries per second")]


class WebhookCreate(Strict):
    url: Url
    event_types: EventTypes
    description: Text = None
    rate_limit: RateLimit | None = None


class WebhookUpdate(Strict):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Text = None
    rate_limit: RateLimit | None = None
    enabled: bool | None = Field(None, description="true enables a disabled subscription again")


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    partner_id: str | None = Field(description="The partner whose key made it (none: made by staff)")
    url: str
    description: str | None
    event_types: list[str]
    pii: bool = Field(description="Personal fields are delivered (its creator held pii:read)")
    enabled: bool
    disabled_reason: str | None
    rate_limit: float | None
    failing_since: datetime | None = Field(description="Since when every attempt failed")
    previous_secret_expires_at: datetime | None = Field(description="Until when the rotated-out secret also signs")
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="whsec_…: shown only here, keep it to verify signatures")


class WebhookPage(Page[WebhookOut]):
    pass


Outcome = Literal["delivered", "failed", "aborted", "gone", "refused", "exhausted"]


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    sequence: str = Field(description="The event's stream sequence (the cursor replay and GET /v1/events take)")
    attempt: int = Field(description="1 for the first attempt at this event")
    outcome: Outcome
    status_code: int | None
    latency_ms: float | None
    response_body: str | None = Field(description="The first 1 KB of the response")
    error: str | None
    next_attempt_at: datetime | None = Field(description="When it is tried again (failed only)")
    attempted_at: datetime

    @classmethod
    def of(cls, row) -> DeliveryOut:
        return cls.model_validate({**row, "sequence": str(row["sequence"])})


class DeliveryPage(Page[DeliveryOut]):
    pass


Cursor = Annotated[str, Field(pattern=r"^[0-9]{1,19}$", description="A stream sequence, as GET /v1/events gives")]


class ReplayRequest(Strict):
    since: datetime | None = Field(None, description="Resend what was published at or after this time")
    after: Cursor | None = Field(None, description="Resend what follows this cursor (a stream sequence)")

    @model_validator(mode="after")
    def _one(self) -> ReplayRequest:
        if (self.since is None) == (self.after is None):
            raise ValueError("give either since or after")
        return self


class ReplayOut(BaseModel):
    subscription_id: str
    since: datetime | None
    after: str | None
    oldest: str = Field(description="The oldest cursor the stream still keeps")
