"""Request and response bodies of conversations and messages (inbound email's too)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from shared.events.contracts import MessageChannel
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_TEXT_SCHEMA, AsText, Id, Strict, Text, stripped_text

Direction = Literal["inbound", "outbound"]
ConversationStatus = Literal["open", "pending", "closed"]

MessageBody = Annotated[
    str, Field(min_length=1, max_length=10000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
]
# A phone number, a handle or an address, as the channel writes it.
Address = Annotated[Id | None, Field(max_length=320)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    return value


RECORDED = ("sms", "chat", "phone", "social", "in_person")


def _not_email(channel: str) -> str:
    # Email is sent (POST /v1/emails) or received (POST /v1/channels/email/inbound), never just recorded.
    if channel == "email":
        raise ValueError(
            "email is not recorded here: send it with POST /v1/emails, a customer's email arrives at "
            "POST /v1/channels/email/inbound"
        )
    return channel


When = Annotated[
    datetime | None, AsText, AfterValidator(_aware), Field(description="When it happened; now if left out")
]


class ConversationCreate(Strict):
    customer_id: Annotated[Id, Field(min_length=1, max_length=36)]
    channel: MessageChannel
    subject: Text = None
    assignee_id: Annotated[
        Id | None, Field(max_length=36, description="An employee stakeholder from network (POST /v1/stakeholders)")
    ] = None


class ConversationUpdate(Strict):
    """Only the fields sent change; `assignee_id: null` unassigns."""

    status: ConversationStatus | None = None
    assignee_id: Annotated[Id | None, Field(max_length=36)] = None


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    channel: MessageChannel
    subject: str | None
    status: ConversationStatus
    assignee_id: str | None
    opened_at: datetime
    first_response_at: datetime | None
    closed_at: datetime | None
    last_message_at: datetime
    first_response_seconds: float | None = Field(description="From opening to the first reply after the customer wrote")
    resolution_seconds: float | None = Field(description="From opening to closing; null while not closed")


class ConversationPage(Page[ConversationOut]):
    pass


class MessageCreate(Strict):
    """A message on a channel engage does not send itself: it is recorded as it happened."""

    customer_id: Annotated[Id, Field(min_length=1, max_length=36)]
    # The schema lists the channels taken; email is refused with a pointer to where it goes.
    channel: Annotated[
        MessageChannel, AfterValidator(_not_email), WithJsonSchema({"type": "string", "enum": list(RECORDED)})
    ]
    direction: Direction
    body: MessageBody
    subject: Text = None
    from_address: Address = None
    to_address: Address = None
    author_id: Annotated[Id | None, Field(max_length=36, description="The employee who wrote it (outbound)")] = None
    occurred_at: When = None


class ReplyCreate(Strict):
    """Staff's reply in a conversation: sent on email (queued for the sender), recorded on other channels."""

    body: MessageBody
    subject: Text = Field(None, description="Email only; `Re: <the conversation's subject>` if left out")
    author_id: Annotated[Id | None, Field(max_length=36, description="The employee who wrote it")] = None


class MessageLink(Strict):
    customer_id: Annotated[Id, Field(min_length=1, max_length=36)]


class AttachmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str | None
    content_type: str = Field(description="As the sender declared it; the download is always application/octet-stream")
    size: int
    sha256: str


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str | None
    customer_id: str | None
    channel: MessageChannel
    direction: Direction
    purpose: str
    status: str
    subject: str | None
    body: str | None
    from_address: str | None
    to_address: str | None
    rfc_message_id: str | None
    in_reply_to: str | None
    author_id: str | None
    last_error: str | None = Field(description="Why it failed or bounced (the server's reply, the DSN's diagnostic)")
    occurred_at: datetime
    created_at: datetime
    sent_at: datetime | None
    attachments: list[AttachmentOut] = []


class MessagePage(Page[MessageOut]):
    pass


class InboundResult(BaseModel):
    """What became of a posted email."""

    outcome: Literal["received", "unmatched", "duplicate", "bounce"] = Field(
        description="received: threaded into a customer's conversation; unmatched: kept for linking "
        "(GET /v1/channels/email/unmatched); duplicate: its Message-ID was stored before (the stored one "
        "is returned); bounce: a delivery status notification, applied to the message it reports on"
    )
    message: MessageOut | None = Field(
        description="The stored message; for a bounce the message that bounced (null when engage never sent it)"
    )
    bounce: BounceOut | None = None


class BounceOut(BaseModel):
    recipient: str | None
    action: str | None
    status: str | None
    diagnostic: str | None
    hard: bool = Field(description="A permanent failure (5.x.x): the address is marked undeliverable")


InboundResult.model_rebuild()
