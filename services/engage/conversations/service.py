"""Conversations and messages: threads with a customer on one channel, and their rules.

A conversation is `open`, `pending` (waiting on the customer) or `closed`; the allowed
moves are in `TRANSITIONS`. A customer's message reopens a pending or closed conversation.
`first_response_at` is the first outbound message after the customer's first inbound one;
closing records `closed_at` and emits crm.engage.conversation.closed with the first response
and resolution times. The assignee (and a message's author) is an employee stakeholder
from network, known from crm.network.stakeholder.created (the employees read model).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.conversations import repository
from services.engage.conversations.models import Attachment, Conversation, Message
from services.engage.conversations.schemas import (
    ConversationCreate,
    ConversationUpdate,
    MessageCreate,
    ReplyCreate,
)
from services.engage.models import aliases, known_customers
from services.engage.outbound.queue import queue_email
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.contracts import StakeholderCreated
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict, NotFound, field_error

# status -> the statuses it may move to (staying put is always allowed and changes nothing).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("pending", "closed"),
    "pending": ("open", "closed"),
    "closed": ("open",),
}


_CONVERSATION_FIELDS = tuple(column.key for column in Conversation.__table__.columns)
_MESSAGE_FIELDS = tuple(column.key for column in Message.__table__.columns)


# --- who may be named ------------------------------------------------------------------


async def known_customer(session: AsyncSession, customer_id: str, field: str = "body.customer_id") -> None:
    """A write naming a customer: 409 `customer_merged` for a merged one, 422 for an unknown one."""

    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise field_error(field, f"no customer with id {customer_id}")


async def _employee(session: AsyncSession, stakeholder_id: str | None, field: str) -> None:
    if stakeholder_id is not None and not await repository.is_employee(session, stakeholder_id):
        raise field_error(field, f"no employee stakeholder with id {stakeholder_id} (network's kind `employee`)")


# --- conversations ---------------------------------------------------------------------


def describe(conversation: Conversation) -> dict[str, Any]:
    """A conversation as the API shows it, with its response and resolution times."""

    opened = conversation.opened_at
    first = conversation.first_response_at
    closed = conversation.closed_at
    return {
        **{column: getattr(conversation, column) for column in _CONVERSATION_FIELDS},
        "first_response_seconds": (first - opened).total_seconds() if first else None,
        "resolution_seconds": (closed - opened).total_seconds() if closed else None,
    }


def new_conversation(*, customer_id: str, channel: str, subject: str | None, at: datetime) -> Conversation:
    return Conversation(
        id=uuid7(),
        customer_id=customer_id,
        channel=channel,
        subject=subject,
        status="open",
        assignee_id=None,
        opened_at=at,
        first_response_at=None,
        closed_at=None,
        last_message_at=at,
    )


async def create_conversation(*, session: AsyncSession, data: ConversationCreate) -> dict[str, Any]:
    await known_customer(session, data.customer_id)
    await _employee(session, data.assignee_id, "body.assignee_id")
    conversation = new_conversation(
        customer_id=data.customer_id, channel=data.channel, subject=data.subject, at=utcnow()
    )
    conversation.assignee_id = data.assignee_id
    session.add(conversation)
    await session.flush()
    return describe(conversation)


async def _conversation(session: AsyncSession, conversation_id: str) -> Conversation:
    conversation = await repository.conversation(session, conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation with id {conversation_id}")
    return conversation


async def get_conversation(*, session: AsyncSession, conversation_id: str) -> dict[str, Any]:
    return describe(await _conversation(session, conversation_id))


async def list_conversations(*, session: AsyncSession, before: tuple[datetime, str] | None, limit: int, **filters):
    rows = await repository.conversations(session, before=before, limit=limit, **filters)
    return [describe(row) for row in rows]


async def customer_conversations(
    *, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int
):
    rows = await list_conversations(
        session=session,
        before=before,
        limit=limit,
        customer_id=customer_id,
        status=None,
        assignee_id=None,
        channel=None,
    )
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows


async def update_conversation(*, session: AsyncSession, conversation_id: str, data: ConversationUpdate):
    """Moves the status (409 naming the allowed moves when it cannot) and sets the assignee."""

    conversation = await _conversation(session, conversation_id)
    changes = data.model_fields_set
    if "assignee_id" in changes:
        await _employee(session, data.assignee_id, "body.assignee_id")
        conversation.assignee_id = data.assignee_id
    if data.status is not None and data.status != conversation.status:
        allowed = TRANSITIONS[conversation.status]
        if data.status not in allowed:
            raise Conflict(
                f"a {conversation.status} conversation cannot become {data.status}; it may become "
                f"{' or '.join(allowed)}",
                error="invalid_transition",
            )
        now = utcnow()
        conversation.status = data.status
        if data.status == "closed":
            conversation.closed_at = now
            _closed(session, conversation)
        else:
            conversation.closed_at = None
    await session.flush()
    return describe(conversation)


def _closed(session: AsyncSession, conversation: Conversation) -> None:
    described = describe(conversation)
    emit(
        session,
        "crm.engage.conversation.closed",
        {
            "id": conversation.id,
            "customer_id": conversation.customer_id,
            "channel": conversation.channel,
            "assignee_id": conversation.assignee_id,
            "first_response_seconds": described["first_response_seconds"],
            "resolution_seconds": described["resolution_seconds"],
            "closed_at": conversation.closed_at,
        },
        subject=conversation.customer_id,
    )


# --- messages in conversations ---------------------------------------------------------


async def add_to_conversation(session: AsyncSession, conversation: Conversation, message: Message) -> None:
    """What a new message changes in its conversation: its last activity, a customer's message
    reopens it, the first reply after the customer wrote is its first response."""

    message.conversation_id = conversation.id
    if message.occurred_at > conversation.last_message_at:
        conversation.last_message_at = message.occurred_at
    if message.direction == "inbound":
        if conversation.status != "open":
            conversation.status = "open"
            conversation.closed_at = None
    elif conversation.first_response_at is None and await repository.has_inbound_before(
        session, conversation.id, message.occurred_at
    ):
        conversation.first_response_at = message.occurred_at


async def thread(session: AsyncSession, message: Message, *, customer_id: str, subject: str | None) -> Conversation:
    """Puts `message` into the customer's open conversation on its channel, or a new one."""

    conversation = await repository.open_conversation(session, customer_id=customer_id, channel=message.channel)
    if conversation is None:
        conversation = new_conversation(
            customer_id=customer_id, channel=message.channel, subject=subject, at=message.occurred_at
        )
        session.add(conversation)
    message.customer_id = customer_id
    await add_to_conversation(session, conversation, message)
    return conversation


def announce(session: AsyncSession, message: Message) -> None:
    """message.received for the customer's message, message.sent for ours."""

    common = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "customer_id": message.customer_id,
        "channel": message.channel,
        "subject": message.subject,
    }
    if message.direction == "inbound":
        emit(
            session,
            "crm.engage.message.received",
            {**common, "received_at": message.occurred_at},
            subject=message.customer_id,
        )
    else:
        emit(
            session,
            "crm.engage.message.sent",
            {**common, "purpose": message.purpose, "request_id": message.request_id, "sent_at": message.occurred_at},
            subject=message.customer_id,
        )


def _recorded(
    *,
    customer_id: str,
    channel: str,
    direction: str,
    body: str,
    subject: str | None,
    from_address: str | None,
    to_address: str | None,
    author_id: str | None,
    at: datetime,
    now: datetime,
) -> Message:
    return Message(
        id=uuid7(),
        customer_id=customer_id,
        channel=channel,
        direction=direction,
        purpose="service",
        status="recorded",
        subject=subject,
        body=body,
        from_address=from_address,
        to_address=to_address,
        author_id=author_id,
        attempts=0,
        occurred_at=at,
        created_at=now,
        sent_at=at if direction == "outbound" else None,
    )


async def record_message(*, session: AsyncSession, data: MessageCreate) -> dict[str, Any]:
    """A message on a channel engage does not send (sms, chat, phone, social, in person), recorded
    into the customer's open conversation on that channel or a new one."""

    await known_customer(session, data.customer_id)
    await _employee(session, data.author_id, "body.author_id")
    now = utcnow()
    message = _recorded(
        customer_id=data.customer_id,
        channel=data.channel,
        direction=data.direction,
        body=data.body,
        subject=data.subject,
        from_address=data.from_address,
        to_address=data.to_address,
        author_id=data.author_id,
        at=data.occurred_at or now,
        now=now,
    )
    await thread(session, message, customer_id=data.customer_id, subject=data.subject)
    session.add(message)
    await session.flush()
    announce(session, message)
    return describe_message(message, [])


async def reply(*, session: AsyncSession, conversation_id: str, data: ReplyCreate) -> dict[str, Any]:
    """Staff's reply: on email queued for the sender (purpose service; 409 `no_address` or
    `undeliverable` when it cannot go), on other channels recorded as sent."""

    conversation = await _conversation(session, conversation_id)
    await aliases.refuse_merged(session, conversation.customer_id)
    await _employee(session, data.author_id, "body.author_id")
    now = utcnow()
    if conversation.channel == "email":
        subject = data.subject or _re(conversation.subject)
        message = await queue_email(
            session,
            customer_id=conversation.customer_id,
            subject=subject,
            body=data.body,
            purpose="service",
            now=now,
            conversation_id=conversation.id,
            author_id=data.author_id,
        )
        # Threading headers for the customer's mail program: the newest message first.
        earlier = await repository.latest_inbound_rfc_ids(session, conversation.id)
        earlier = [i for i in earlier if i != message.rfc_message_id]
        if earlier:
            message.in_reply_to = earlier[0]
            message.references = " ".join(reversed(earlier))
        await add_to_conversation(session, conversation, message)
        await session.flush()  # message.sent follows when the sender has sent it
    else:
        message = _recorded(
            customer_id=conversation.customer_id,
            channel=conversation.channel,
            direction="outbound",
            body=data.body,
            subject=data.subject,
            from_address=None,
            to_address=None,
            author_id=data.author_id,
            at=now,
            now=now,
        )
        await add_to_conversation(session, conversation, message)
        session.add(message)
        await session.flush()
        announce(session, message)
    return describe_message(message, [])


def _re(subject: str | None) -> str:
    if not subject:
        return "Re: your message"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"[:300]


def describe_message(message: Message, attachments: Sequence[Attachment]) -> dict[str, Any]:
    return {
        **{column: getattr(message, column) for column in _MESSAGE_FIELDS},
        "attachments": list(attachments),
    }


async def _described(session: AsyncSession, messages: Sequence[Message]) -> list[dict[str, Any]]:
    attachments = await repository.attachments_of(session, [m.id for m in messages])
    return [describe_message(m, attachments.get(m.id, [])) for m in messages]


async def conversation_messages(
    *, session: AsyncSession, conversation_id: str, after: tuple[datetime, str] | None, limit: int
):
    rows = await repository.conversation_messages(session, conversation_id=conversation_id, after=after, limit=limit)
    if not rows:
        await _conversation(session, conversation_id)
    return await _described(session, rows)


async def get_message(*, session: AsyncSession, message_id: str) -> dict[str, Any]:
    message = await repository.message(session, message_id)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    return (await _described(session, [message]))[0]


async def unmatched(*, session: AsyncSession, before: tuple[datetime, str] | None, limit: int):
    return await _described(session, await repository.unmatched(session, before=before, limit=limit))


async def attachment(*, session: AsyncSession, message_id: str, attachment_id: str) -> Attachment:
    found = await repository.attachment(session, message_id, attachment_id)
    if found is None or found.content is None:  # erased content is gone for good
        raise NotFound(f"no attachment {attachment_id} on message {message_id}")
    return found


# --- events ----------------------------------------------------------------------------


async def remember_employees(session: AsyncSession, events: list[Event[StakeholderCreated]]) -> None:
    """network's employee stakeholders (other kinds, and kinds this reader does not know, are skipped)."""

    await repository.add_employees(
        session, [{"id": e.data.id, "created_at": e.at} for e in events if e.data.kind == "employee"]
    )


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' conversations and messages become the survivor's."""

    await repository.move_to_survivor(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)
