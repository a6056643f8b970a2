"""engage's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_TEXT_SCHEMA, AsText, Strict, single_line, stripped_text

Channel = Literal["email", "phone", "sms", "chat", "web", "social", "in_person", "other"]
Direction = Literal["inbound", "outbound"]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    return value


class InteractionCreate(Strict):
    customer_id: Annotated[str, Field(min_length=1, max_length=36), AfterValidator(single_line)]
    channel: Channel
    direction: Direction
    # Several lines may be a summary's: line feeds and tabs are kept.
    summary: Annotated[
        str, Field(min_length=1, max_length=2000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
    ]
    occurred_at: Annotated[
        datetime | None, AsText, AfterValidator(_aware), Field(description="When it happened; now if left out")
    ] = None


class InteractionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    channel: Channel
    direction: Direction
    summary: str
    occurred_at: datetime
    logged_at: datetime


class InteractionPage(Page[InteractionOut]):
    pass


class TimelineItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: str = Field(description="The event type (its subject), e.g. crm.identify.transaction.recorded")
    time: datetime = Field(description="When it happened (the event's business time)")
    summary: str
    event_id: str


class TimelinePage(Page[TimelineItem]):
    pass
