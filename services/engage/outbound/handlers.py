"""Outbound email's consumer: the messages value asks engage to deliver."""

from __future__ import annotations

from typing import get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.conversations.models import Message
from services.engage.models import aliases
from services.engage.outbound.service import Refusal, compose_and_queue
from shared.db.database import utcnow
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import MessageChannel, MessageRequested, MessagesRequested
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
    emit(
        session,
        "crm.engage.delivery.reported",
        {
            "request_id": data.request_id,
            "customer_id": data.customer_id,
            "channel": data.channel,
            "outcome": "refused",
            "reason": reason,
            "message_id": None,
            "source_kind": data.source_kind,
            "source_id": data.source_id,
            "reported_at": utcnow(),
        },
        subject=data.customer_id,
    )


_CHANNELS = frozenset(get_args(MessageChannel))

REQUESTS = ConsumerSpec(
    purpose="message-requests",
    handlers={
        "crm.value.message.requested": on_message_requested,
        "crm.value.messages.requested": on_messages_requested,
    },
    description=(
        "Delivers the messages value asks for (one by one, or a campaign's to many recipients at once): "
        "renders the template or text with the request's merge "
        "fields, applies consent and frequency caps, and queues the email; a refusal (or a channel engage "
        "cannot send on: no_transport) is reported as crm.engage.delivery.reported, and so, later, is the "
        "sent or failed email."
    ),
)
