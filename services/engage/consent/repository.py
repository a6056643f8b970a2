"""Every query of engage's consent: the ledger, the current state, and the marketing
messages a frequency cap counts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent.models import ConsentEntry, ConsentState
from services.engage.conversations.models import Message
from services.engage.models import known_customers

# Messages that count against a cap: on their way, or gone.
COUNTED = ("queued", "sent")


async def add_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(ConsentEntry), rows)


async def states_of(session: AsyncSession, customer_ids: Collection[str]) -> list[ConsentState]:
    """The current states of these customers (ORM objects: the caller may change them)."""

    if not customer_ids:
        return []
    query = select(ConsentState).where(ConsentState.customer_id.in_(sorted(set(customer_ids))))
    return list((await session.execute(query)).scalars())


async def current(session: AsyncSession, customer_id: str) -> list[dict[str, Any]]:
    query = (
        select(
            ConsentState.purpose,
            ConsentState.channel,
            ConsentState.granted,
            ConsentState.changed_at,
            ConsentState.entry_id,
        )
        .where(ConsentState.customer_id == customer_id)
        .order_by(ConsentState.purpose, ConsentState.channel)
    )
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def history(
    session: AsyncSession, customer_id: str, *, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """The customer's ledger, newest first (changed_at, then id), `limit` entries after `before`."""

    query = select(*ConsentEntry.__table__.columns).where(ConsentEntry.customer_id == customer_id)
    if before is not None:
        query = query.where(tuple_(ConsentEntry.changed_at, ConsentEntry.id) < tuple_(*before))
    query = query.order_by(ConsentEntry.changed_at.desc(), ConsentEntry.id.desc()).limit(limit)
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def known_among(session: AsyncSession, customer_ids: Collection[str]) -> set[str]:
    """Those of `customer_ids` engage knows (identify created them)."""

    if not customer_ids:
        return set()
    table = known_customers.table
    rows = await session.execute(select(table.c.id).where(table.c.id.in_(sorted(set(customer_ids)))))
    return set(rows.scalars())


async def move_ledger(session: AsyncSession, *, merged_ids: Sequence[str], survivor_id: str) -> None:
    await session.execute(
        update(ConsentEntry).where(ConsentEntry.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )


async def drop_states(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    await session.execute(delete(ConsentState).where(ConsentState.customer_id.in_(customer_ids)))


# The marketing gate in one statement, built once (its cost is mostly SQLAlchemy's, not the
# database's): the consent state by its primary key, and the customer's counted marketing
# messages on the channel since the window's start, a range of ix_messages_marketing cut
# short at the cap.
_COUNTED_SINCE = (
    select(Message.id)
    .where(
        Message.customer_id == bindparam("customer_id"),
        Message.channel == bindparam("channel"),
        Message.purpose == "marketing",
        Message.created_at > bindparam("since"),
        Message.status.in_(COUNTED),
    )
    .limit(bindparam("cap"))
    .subquery()
)
_MARKETING_GATE = select(
    ConsentState.granted, select(func.count()).select_from(_COUNTED_SINCE).scalar_subquery()
).where(
    ConsentState.customer_id == bindparam("customer_id"),
    ConsentState.purpose == "marketing",
    ConsentState.channel == bindparam("channel"),
)


async def marketing_gate(
    session: AsyncSession, *, customer_id: str, channel: str, since: datetime, cap: int
) -> tuple[bool, int] | None:
    """(granted, marketing messages queued or sent after `since`, counted up to `cap`) for the
    customer on `channel`; None when no consent was ever recorded for it."""

    connection = await session.connection()
    row = (
        await connection.execute(
            _MARKETING_GATE, {"customer_id": customer_id, "channel": channel, "since": since, "cap": cap}
        )
    ).first()
    return None if row is None else (bool(row[0]), int(row[1] or 0))
