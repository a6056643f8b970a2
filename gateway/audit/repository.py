"""The audit log's queries: append a batch to the chain, list entries, walk the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.chain import GENESIS, chain_hash
from gateway.audit.models import AuditEntry, AuditResource
from shared.db.database import InlineSession, dialect_name

ENTRIES = AuditEntry.__table__
# The PostgreSQL advisory lock that makes the chain one chain across gateway processes
# ("audit_lo" in ASCII). SQLite needs none: the writer's BEGIN IMMEDIATE takes the
# database's write lock before the head is read.
CHAIN_LOCK = 0x61756469745F6C6F
# Built once: every audited write appends (building a statement and its cache key cost more
# than running it).
_LOCK_CHAIN = text("SELECT pg_advisory_xact_lock(:key)")
_HEAD = select(ENTRIES.c.seq, ENTRIES.c.hash).order_by(ENTRIES.c.seq.desc()).limit(1)
_INSERT_ENTRIES = insert(ENTRIES)
_INSERT_RESOURCES = insert(AuditResource.__table__)


async def append(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """Number and hash `entries` after the chain's head and insert them; answer the new head.

    Runs in the caller's write transaction, which holds the chain's lock from here to its
    commit: another gateway process appending at the same time waits, then reads the head
    this one wrote (PostgreSQL reads committed rows afresh at each statement)."""

    if dialect_name(session) == "postgresql":
        await session.execute(_LOCK_CHAIN, {"key": CHAIN_LOCK})
    head = (await session.execute(_HEAD)).first()
    seq, previous = (head.seq, head.hash) if head is not None else (0, GENESIS)
    rows: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        row = {**entry, "seq": seq, "prev_hash": previous}
        previous = row["hash"] = chain_hash(previous, row)
        rows.append(row)
        index.extend({"resource_id": resource, "seq": seq} for resource in row["resources"])
    await session.execute(_INSERT_ENTRIES, rows)
    if index:
        await session.execute(_INSERT_RESOURCES, index)
    return seq, previous


async def entries(
    session: AsyncSession | InlineSession,
    *,
    actor: str | None,
    resource: str | None,
    since: datetime | None,
    until: datetime | None,
    before: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Entries newest first (by `seq`), below `before` when paging on."""

    query = select(ENTRIES).order_by(AuditEntry.seq.desc()).limit(limit)
    if actor is not None:
        query = query.where(or_(AuditEntry.actor_id == actor, AuditEntry.person_id == actor))
    if resource is not None:
        touched = select(AuditResource.seq).where(AuditResource.resource_id == resource)
        query = query.where(AuditEntry.seq.in_(touched))
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return (await session.execute(query)).all()


async def chunk(session: AsyncSession | InlineSession, *, after: int, limit: int) -> Sequence[Row[Any]]:
    """The next `limit` entries of the chain after `seq` `after`, oldest first."""

    query = select(ENTRIES).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
    return (await session.execute(query)).all()
