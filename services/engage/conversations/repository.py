"""The queries of conversations, messages, attachments and the employees read model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from services.engage.conversations.models import Attachment, Conversation, Employee, Message
from shared.db.database import insert_ignoring

# --- conversations ---------------------------------------------------------------------


async def conversation(session: AsyncSession, conversation_id: str) -> Conversation | None:
    return await session.get(Conversation, conversation_id)


async def open_conversation(session: AsyncSession, *, customer_id: str, channel: str) -> Conversation | None:
    """The customer's newest conversation on `channel` that is not closed."""

    query = (
        select(Conversation)
        .where(
            Conversation.customer_id == customer_id,
            Conversation.channel == channel,
            Conversation.status != "closed",
        )
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def conversations(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: str | None,
    assignee_id: str | None,
    channel: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Conversation]:
    """Newest activity first, strictly before `before` = (last_message_at, id)."""

    query = select(Conversation).order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(limit)
    for column, value in (
        (Conversation.customer_id, customer_id),
        (Conversation.status, status),
        (Conversation.assignee_id, assignee_id),
        (Conversation.channel, channel),
    ):
        if value is not None:
            query = query.where(column == value)
    if before:
        query = query.where(tuple_(Conversation.last_message_at, Conversation.id) < before)
    return list((await session.scalars(query)).all())


async def has_inbound_before(session: AsyncSession, conversation_id: str, at: datetime) -> bool:
    query = select(
        exists().where(
            Message.conversation_id == conversation_id, Message.direction == "inbound", Message.occurred_at <= at
        )
    )
    return bool(await session.scalar(query))


# --- messages --------------------------------------------------------------------------


async def message(session: AsyncSession, message_id: str) -> Message | None:
    return await session.get(Message, message_id)


async def conversation_messages(
    session: AsyncSession, *, conversation_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Message]:
    """Oldest first, as a thread is read, strictly after `after` = (occurred_at, id)."""

    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.occurred_at, Message.id)
        .limit(limit)
    )
    if after:
        query = query.where(tuple_(Message.occurred_at, Message.id) > after)
    return list((await session.scalars(query)).all())


async def unmatched(session: AsyncSession, *, before: tuple[datetime, str] | None, limit: int) -> list[Message]:
    """Inbound mail no customer was found for, newest first."""

    query = (
        select(Message)
        .where(Message.status == "unmatched")
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
    )
    if before:
        query = query.where(tuple_(Message.created_at, Message.id) < before)
    return list((await session.scalars(query)).all())


async def messages_with_rfc_ids(session: AsyncSession, rfc_ids: Sequence[str], *, direction: str | None = None):
    """Messages whose Message-ID is one of `rfc_ids` (threading, replays, bounces)."""

    if not rfc_ids:
        return []
    query = select(Message).where(Message.rfc_message_id.in_(list(rfc_ids)))
    if direction:
        query = query.where(Message.direction == direction)
    return list((await session.scalars(query.order_by(Message.created_at, Message.id))).all())


async def latest_inbound_rfc_ids(session: AsyncSession, conversation_id: str) -> list[str]:
    """The Message-IDs of a conversation's messages, newest first (a reply's In-Reply-To and References)."""

    query = (
        select(Message.rfc_message_id)
        .where(Message.conversation_id == conversation_id, Message.rfc_message_id.is_not(None))
        .order_by(Message.occurred_at.desc(), Message.id.desc())
        .limit(20)
    )
    return [row for row in (await session.scalars(query)).all() if row]


# --- attachments -----------------------------------------------------------------------


async def attachments_of(session: AsyncSession, message_ids: Sequence[str]) -> dict[str, list[Attachment]]:
    """The attachments' descriptions (not their bytes) per message."""

    if not message_ids:
        return {}
    query = (
        select(Attachment)
        .options(defer(Attachment.content, raiseload=True))
        .where(Attachment.message_id.in_(list(message_ids)))
        .order_by(Attachment.message_id, Attachment.id)
    )
    found: dict[str, list[Attachment]] = {}
    for attachment in (await session.scalars(query)).all():
        found.setdefault(attachment.message_id, []).append(attachment)
    return found


async def attachment(session: AsyncSession, message_id: str, attachment_id: str) -> Attachment | None:
    found = await session.get(Attachment, attachment_id)
    return found if found is not None and found.message_id == message_id else None


# --- merges ----------------------------------------------------------------------------


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    for table in (Conversation.__table__, Message.__table__):
        await session.execute(update(table).where(table.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))


# --- employees -------------------------------------------------------------------------


async def add_employees(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert_ignoring(session, Employee.__table__, ["id"]), rows)


async def is_employee(session: AsyncSession, stakeholder_id: str) -> bool:
    return await session.get(Employee, stakeholder_id) is not None
