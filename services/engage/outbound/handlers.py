"""Outbound email's consumer: the messages value asks engage to deliver, and lifecycle's ticket replies."""

from __future__ import annotations

from typing import get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.conversations import repository as conversations
from services.engage.conversations.models import Message
from services.engage.conversations.service import add_to_conversation, thread
from services.engage.models import aliases
from services.engage.outbound.queue import queue_email
from services.engage.outbound.service import Refusal, compose_and_queue
from shared.db.database import utcnow
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import MessageChannel, MessageRequested, MessagesRequested, TicketReplyRequested
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict

# engage can really send only email; the other channels' messages are recorded as they happen.
TRANSPORTS = frozenset({"email"})


async def on_message_requested(session: AsyncSession, event: Event[MessageRequested]) -> None:
    """Queue the message, or report it refused (writing no message).

    Redelivery queues nothing twice: the inbox skips an event seen before, and a request id
    already queued (`ix_messages_request`, unique) is left alone."""

    if not await _queued(session, [event.data.request_id]):
        await _deliver(session, event.data)


async def on_messages_requested(session: AsyncSession, event: Event[MessagesRequested]) -> None:
    """Each recipient of a bulk request as a crm.value.message.requested of its own: queued or
    reported refused. A recipient merged since is the survivor's (the consumer maps only an
    event's own customer fields, and a bulk request has none)."""

    data = event.data
    recipients = data.recipients
    queued = await _queued(session, [r.request_id for r in recipients])
    survivors = await aliases.survivors(session, [r.customer_id for r in recipients])
    shared = data.model_dump(exclude={"recipients"})
    for recipient in recipients:
        if recipient.request_id in queued:
            continue
        one = MessageRequested.model_construct(
            **shared,
            request_id=recipient.request_id,
            customer_id=survivors.get(recipient.customer_id, recipient.customer_id),
            fields=recipient.fields,
        )
        await _deliver(session, one)


async def _queued(session: AsyncSession, request_ids: list[str]) -> set[str]:
    query = select(Message.request_id).where(Message.request_id.in_(request_ids))
    return {rid for rid in (await session.scalars(query)) if rid is not None}


async def _deliver(session: AsyncSession, data: MessageRequested) -> None:
    if data.channel not in _CHANNELS:
        return  # a channel this engage does not know (a tolerant reader's "other"): nothing to say it on
    reason: str | None = None
    if data.channel not in TRANSPORTS:
        reason = "no_transport"
    elif data.purpose not in ("marketing", "service"):
        reason = "unknown_purpose"  # a purpose this engage does not know yet (a tolerant reader's "other")
    else:
        try:
            await compose_and_queue(
                session,
                customer_id=data.customer_id,
                purpose=data.purpose,
                template_id=data.template_id,
                subject=data.subject,
                body=data.body,
                fields=data.fields,
                now=utcnow(),
                request_id=data.request_id,
                source_kind=data.source_kind,
                source_id=data.source_id,
            )
        except Refusal as refused:
            reason = refused.code
        except Conflict as refused:
            reason = refused.error
    if reason is not None:
        report_refused(session, data, reason)


def report_refused(session: AsyncSession, data: MessageRequested, reason: str) -> None:
    _refused(session, data.request_id, data.customer_id, data.channel, reason, data.source_kind, data.source_id)


def _refused(session: AsyncSession, request_id, customer_id, channel, reason, source_kind, source_id) -> None:
    emit(
        session,
        "crm.engage.delivery.reported",
        {
            "request_id": request_id,
            "customer_id": customer_id,
            "channel": channel,
            "outcome": "refused",
            "reason": reason,
            "message_id": None,
            "source_kind": source_kind,
            "source_id": source_id,
            "reported_at": utcnow(),
        },
        subject=customer_id,
    )


async def on_reply_requested(session: AsyncSession, event: Event[TicketReplyRequested]) -> None:
    """A public comment on one of lifecycle's tickets: a service email to the customer, in the
    ticket's conversation when it is this customer's email conversation, else threaded into
    their open email conversation (or a new one). A refusal (no address, undeliverable) is
    reported as crm.engage.delivery.reported with source_kind `ticket`. Queued once per request."""

    data = event.data
    if data.body is None:
        return  # erased before it could be sent
    if await session.scalar(select(Message.id).where(Message.request_id == data.request_id)) is not None:
        return
    subject = data.subject or "Your ticket"
    try:
        message = await queue_email(
            session,
            customer_id=data.customer_id,
            subject=subject if subject.lower().startswith("re:") else f"Re: {subject}"[:300],
            body=data.body,
            purpose="service",
            now=utcnow(),
            request_id=data.request_id,
            source_kind="ticket",
            source_id=data.ticket_id,
            author_id=data.author_id,
        )
    except Conflict as refused:
        _refused(session, data.request_id, data.customer_id, "email", refused.error, "ticket", data.ticket_id)
        return
    linked = await conversations.conversation(session, data.conversation_id) if data.conversation_id else None
    if linked is not None and linked.customer_id == data.customer_id and linked.channel == "email":
        await add_to_conversation(session, linked, message)
    else:
        await thread(session, message, customer_id=data.customer_id, subject=data.subject)
    await session.flush()


_CHANNELS = frozenset(get_args(MessageChannel))

REQUESTS = ConsumerSpec(
    purpose="message-requests",
    handlers={
        "crm.value.message.requested": on_message_requested,
        "crm.value.messages.requested": on_messages_requested,
        "crm.lifecycle.reply.requested": on_reply_requested,
    },
    description=(
        "Delivers the messages value asks for (one by one, or a campaign's to many recipients at once): "
        "renders the template or text with the request's merge "
        "fields, applies consent and frequency caps, and queues the email; a refusal (or a channel engage "
        "cannot send on: no_transport) is reported as crm.engage.delivery.reported, and so, later, is the "
        "sent or failed email. lifecycle's ticket replies (crm.lifecycle.reply.requested) go out the same way as "
        "service email in the ticket's conversation."
    ),
)
