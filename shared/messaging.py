"""The outbox, inbox and dead-letter tables every service keeps in its own database.

`emit()` writes an event into the outbox inside the caller's transaction: the state
change and its event commit together or not at all. Consumers record the ids of
the events they handled in the inbox in the same transaction as their effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import orjson

from sqlalchemy import BigInteger, Column, Integer, Index, LargeBinary, MetaData, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import CATALOG
from shared.db import UTCDateTime, utcnow
from shared.events import CloudEvent, make_event

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
_Seq = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    dead_letters: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", _Seq, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("published_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Index("ix_outbox_pending", "published_at", "seq"),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("handled_at", UTCDateTime, nullable=False, default=utcnow),
    )
    dead_letters = Table(
        "dead_letters",
        metadata,
        Column("id", _Seq, primary_key=True, autoincrement=True),
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(100), nullable=True),
        Column("subject", String(200), nullable=True),
        Column("body", LargeBinary, nullable=False),
        Column("error", Text, nullable=False),
        Column("deliveries", Integer, nullable=False),
        Column("failed_at", UTCDateTime, nullable=False, default=utcnow),
    )
    return MessagingTables(outbox, inbox, dead_letters)


def tables_of(session: AsyncSession) -> MessagingTables:
    return session.info["messaging"]


def emit(session: AsyncSession, type: str, data: dict[str, Any], *, subject: str | None = None) -> CloudEvent:
    """Validate `data` against the catalog and add the event to the session's transaction."""

    contract = CATALOG[type]
    payload = contract.model.model_validate(data).model_dump(mode="json")
    event = make_event(
        service=session.info["service"],
        type=type,
        data=payload,
        subject=subject,
        dataschema=contract.dataschema,
    )
    session.info.setdefault("pending_events", []).append(
        {"event_id": event.id, "subject": type, "body": _encode(event), "created_at": event.time}
    )
    return event


_ENVELOPE = tuple(CloudEvent.model_fields)


def _encode(event: CloudEvent) -> bytes:
    """`event.to_json()`, in a third of the time, for an event whose data is JSON-ready.

    emit() makes the data JSON-ready (the contract's JSON dump), so only the
    envelope needs encoding: orjson writes the UTC time with a "Z" as pydantic does.
    tests/shared/test_messaging.py holds the two equal.
    """

    fields = event.__dict__
    return orjson.dumps(
        {name: fields[name] for name in _ENVELOPE if fields[name] is not None}, option=orjson.OPT_UTC_Z
    )


async def flush_events(session: AsyncSession) -> int:
    """Write the events emitted in this session to the outbox (called just before commit)."""

    rows = session.info.pop("pending_events", None)
    if not rows:
        return 0
    await session.execute(insert(tables_of(session).outbox), rows)
    return len(rows)


async def handled_ids(session: AsyncSession, consumer: str, event_ids: Iterable[str]) -> set[str]:
    inbox = tables_of(session).inbox
    ids = list(event_ids)
    if not ids:
        return set()
    result = await session.execute(
        select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id.in_(ids))
    )
    return set(result.scalars())


async def record_handled(session: AsyncSession, consumer: str, event_ids: Iterable[str], at: datetime) -> None:
    rows = [{"consumer": consumer, "event_id": event_id, "handled_at": at} for event_id in event_ids]
    if rows:
        await session.execute(insert(tables_of(session).inbox), rows)
