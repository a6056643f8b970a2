"""The send queue's queries: claiming due messages and recording what became of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.conversations.models import Message
from shared.db.database import InlineSession

messages = Message.__table__

# What the sender needs of a claimed message.
CLAIMED = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.customer_id,
    messages.c.channel,
    messages.c.purpose,
    messages.c.subject,
    messages.c.body,
    messages.c.from_address,
    messages.c.to_address,
    messages.c.rfc_message_id,
    messages.c.in_reply_to,
    messages.c.references,
    messages.c.request_id,
    messages.c.source_kind,
    messages.c.source_id,
    messages.c.attempts,
)


async def claim(session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` due messages, oldest due first, taken for this sender: their attempt is
    counted and they are not due again before `lease_until`.

    One UPDATE ... RETURNING is the claim, so two senders never take the same row: on
    PostgreSQL the inner SELECT skips rows another sender's claim holds locked (FOR UPDATE
    SKIP LOCKED) and the outer WHERE checks again what a concurrent claim may have changed;
    on SQLite writers take turns (BEGIN IMMEDIATE) and the SELECT's FOR UPDATE is dropped.
    """

    due = (
        select(messages.c.id)
        .where(messages.c.status == "queued", messages.c.next_attempt_at <= now)
        .order_by(messages.c.next_attempt_at, messages.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(messages)
        .where(
            messages.c.id.in_(due.scalar_subquery()),
            messages.c.status == "queued",
            messages.c.next_attempt_at <= now,
        )
        .values(attempts=messages.c.attempts + 1, next_attempt_at=lease_until)
        .returning(*CLAIMED)
    )
    rows = (await session.execute(statement)).all()
    return sorted(rows, key=lambda row: row.id)  # RETURNING's order is not the SELECT's


async def mark_sent(session: AsyncSession, ids: list[str], sent_at: datetime) -> None:
    if ids:
        await session.execute(
            update(messages)
            .where(messages.c.id.in_(ids), messages.c.status == "queued")
            .values(status="sent", sent_at=sent_at, next_attempt_at=None, last_error=None)
        )


async def mark_retry(session: AsyncSession, retries: list[dict[str, Any]]) -> None:
    """`retries`: {"m_id", "m_next", "m_error"} per message to try again later."""

    if retries:
        await session.execute(
            update(messages)
            .where(messages.c.id == bindparam("m_id"), messages.c.status == "queued")
            .values(next_attempt_at=bindparam("m_next"), last_error=bindparam("m_error"))
            .execution_options(synchronize_session=False),
            retries,
        )


async def mark_failed(session: AsyncSession, failures: list[dict[str, Any]], status: str = "failed") -> None:
    """`failures`: {"m_id", "m_error"} per message that will not be sent (failed, or refused)."""

    if failures:
        await session.execute(
            update(messages)
            .where(messages.c.id == bindparam("m_id"), messages.c.status == "queued")
            .values(status=status, next_attempt_at=None, last_error=bindparam("m_error"))
            .execution_options(synchronize_session=False),
            failures,
        )


async def next_due(session: AsyncSession | InlineSession) -> datetime | None:
    """When the next queued message is due (the sender sleeps until then, or a wake-up)."""

    return await session.scalar(
        select(messages.c.next_attempt_at)
        .where(messages.c.status == "queued")
        .order_by(messages.c.next_attempt_at)
        .limit(1)
    )
