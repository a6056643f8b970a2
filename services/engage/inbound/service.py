"""Inbound email: a raw message posted by the mail provider, threaded into a conversation,
kept as unmatched, or read as a bounce.

Threading: a reply (In-Reply-To, then References) joins the conversation of the message it
answers; otherwise the sender's address finds the customer (engage's contact read model)
and the mail joins that customer's open email conversation, or starts one. A sender no
customer has (or several customers share) is kept with status `unmatched`, no customer and
no conversation, until `link` names the customer. Nothing is dropped, nothing is stored
twice: a Message-ID seen before answers with the stored message.

A delivery status notification is no customer's message: it marks the message it reports
on `bounced` (a hard bounce also marks the address undeliverable) and is not stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.contacts import service as contacts
from services.engage.conversations import repository
from services.engage.conversations import service as conversations
from services.engage.conversations.models import Attachment, Message
from services.engage.inbound.parse import Bounce, Malformed, ParsedMail, parse
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.messaging import emit
from shared.http.errors import Conflict, NotFound, field_error

# The largest raw message taken (the gateway's route row says the same: gateway/routes.py).
MAX_INBOUND_BYTES = 25 * 1024 * 1024


def read(raw: bytes) -> ParsedMail | Bounce:
    """The raw message parsed; a malformed one is 422 naming `body` and saying why."""

    try:
        return parse(raw)
    except Malformed as exc:
        raise field_error("body", str(exc)) from None


async def receive(*, session: AsyncSession, parsed: ParsedMail | Bounce) -> tuple[bool, dict[str, Any]]:
    """(created, what became of it): see InboundResult."""

    if isinstance(parsed, Bounce):
        return False, await _apply_bounce(session, parsed)
    if parsed.message_id:
        [*seen] = await repository.messages_with_rfc_ids(session, [parsed.message_id], direction="inbound")
        if seen:
            return False, {
                "outcome": "duplicate",
                "message": await conversations.get_message(session=session, message_id=seen[0].id),
            }
    now = utcnow()
    message = _message(parsed, now)
    customer_id, conversation = await _find_thread(session, parsed)
    if conversation is not None:
        message.customer_id = conversation.customer_id
        await conversations.add_to_conversation(session, conversation, message)
    elif customer_id is not None:
        conversation = await conversations.thread(session, message, customer_id=customer_id, subject=parsed.subject)
    else:
        message.status = "unmatched"
    session.add(message)
    await session.flush()  # the message before its attachments (their foreign key)
    session.add_all(
        Attachment(
            id=uuid7(),
            message_id=message.id,
            filename=a.filename,
            content_type=a.content_type,
            size=len(a.content),
            sha256=a.sha256,
            content=a.content,
        )
        for a in parsed.attachments
    )
    await session.flush()
    if message.customer_id is not None:
        conversations.announce(session, message)
    described = await conversations.get_message(session=session, message_id=message.id)
    return True, {"outcome": "received" if message.customer_id else "unmatched", "message": described}


def _message(parsed: ParsedMail, now: datetime) -> Message:
    return Message(
        id=uuid7(),
        conversation_id=None,
        customer_id=None,
        channel="email",
        direction="inbound",
        purpose="service",
        status="received",
        subject=parsed.subject,
        body=parsed.body,
        from_address=parsed.from_address,
        to_address=parsed.to_address,
        rfc_message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references) or None,
        attempts=0,
        # The sender's Date, unless it claims the future.
        occurred_at=min(parsed.date, now) if parsed.date else now,
        created_at=now,
    )


async def _find_thread(session: AsyncSession, parsed: ParsedMail):
    """(customer, conversation): the answered message's conversation, else the sender's customer."""

    answered = await repository.messages_with_rfc_ids(session, parsed.thread_ids)
    by_id = {m.rfc_message_id: m for m in answered if m.conversation_id and m.customer_id}
    for rfc_id in parsed.thread_ids:
        if rfc_id in by_id:
            conversation = await repository.conversation(session, by_id[rfc_id].conversation_id or "")
            if conversation is not None:
                return conversation.customer_id, conversation
    customers = await contacts.customers_with_email(session, parsed.from_address)
    # Several customers with one address: a person should say which (link), not a guess.
    return (customers[0] if len(customers) == 1 else None), None


async def link(*, session: AsyncSession, message_id: str, customer_id: str) -> dict[str, Any]:
    """An unmatched message given to its customer: threaded, and message.received emitted."""

    message = await repository.message(session, message_id)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    if message.status != "unmatched":
        raise Conflict(
            f"message {message_id} is {message.status}, not unmatched: it belongs to customer "
            f"{message.customer_id} already",
            error="not_unmatched",
        )
    await conversations.known_customer(session, customer_id)
    message.status = "received"
    await conversations.thread(session, message, customer_id=customer_id, subject=message.subject)
    await session.flush()
    conversations.announce(session, message)
    return await conversations.get_message(session=session, message_id=message.id)


async def _apply_bounce(session: AsyncSession, bounce: Bounce) -> dict[str, Any]:
    now = utcnow()
    report = {
        "recipient": bounce.recipient,
        "action": bounce.action,
        "status": bounce.status,
        "diagnostic": bounce.diagnostic,
        "hard": bounce.failed and bounce.hard,
    }
    outcome: dict[str, Any] = {"outcome": "bounce", "message": None, "bounce": report}
    if not bounce.failed:  # delayed, delivered, relayed: nothing went wrong (yet)
        return outcome
    reason = " ".join(filter(None, (bounce.status, bounce.diagnostic))) or "bounced"
    [*originals] = await repository.messages_with_rfc_ids(session, bounce.original_message_ids, direction="outbound")
    original = originals[0] if originals else None
    recipient = bounce.recipient or (original.to_address if original else None)
    if report["hard"] and recipient:
        await contacts.mark_undeliverable(session, recipient, reason, now)
    if original is None:
        return outcome
    if original.status != "bounced":
        original.status = "bounced"
        original.last_error = reason
        original.next_attempt_at = None
        await session.flush()
        if original.customer_id:
            _announce_bounce(session, original, reason, now)
    outcome["message"] = await conversations.get_message(session=session, message_id=original.id)
    return outcome


def _announce_bounce(session: AsyncSession, message: Message, reason: str, now: datetime) -> None:
    emit(
        session,
        "crm.engage.message.failed",
        {
            "id": message.id,
            "conversation_id": message.conversation_id,
            "customer_id": message.customer_id,
            "channel": message.channel,
            "status": "bounced",
            "reason": reason,
            "request_id": message.request_id,
            "failed_at": now,
        },
        subject=message.customer_id,
    )
    if message.request_id:
        emit(
            session,
            "crm.engage.delivery.reported",
            {
                "request_id": message.request_id,
                "customer_id": message.customer_id,
                "channel": message.channel,
                "outcome": "bounced",
                "reason": reason,
                "message_id": message.id,
                "source_kind": message.source_kind or "unknown",
                "source_id": message.source_id or message.request_id,
                "reported_at": now,
            },
            subject=message.customer_id,
        )
