"""A service's share of an erasure: its tables, its outbox and dead letters, SQLite's leftovers.

`erase_customer_data` reads only the classification marks (classification.py): every
table of the service's metadata tied to customers (`about_customers`) has its personal
columns nulled (or set to ERASED where NULL is not allowed) for the erased ids, or its
rows deleted (`erase="delete"`); the non-personal facts stay under the pseudonymous id.
The outbox and dead-letter rows about them are rewritten with their events scrubbed
(scrub.py), and the ids go into `erased_customers`, so a late event about them (another
service's, read after the erasure) is scrubbed before it reaches a read model.

SQLite keeps deleted bytes in free pages and the WAL: the suite's connections run with
`secure_delete` (shared/db/database.py), and after the erasure commits its WAL is
checkpointed and truncated (`checkpoint_after_commit`).

`erasure_consumer` is the `<service>-erasures` consumer of engage, network, value and
lifecycle; identify erases its own data in the request (services/identify/privacy).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Column, MetaData, Select, String, Table, delete, event, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from shared.db.bulk import one_of
from shared.db.database import UTCDateTime, dialect_name, insert_ignoring, utcnow
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerErased, erasure_applied_subject
from shared.events.envelope import Event
from shared.events.messaging import MessagingTables, emit, outbox_events
from shared.privacy.classification import ERASED, customer_link, personal_columns
from shared.privacy.scrub import scrub_event_json

log = logging.getLogger("valuechain.privacy")

ERASED_SUBJECT = "crm.identify.customer.erased"

# An extra step of a service's erasure: rows erased per table, for what the marks cannot say.
ErasureStep = Callable[[AsyncSession, list[str]], Awaitable[dict[str, int]]]


class ErasedCustomers:
    """The customers erased in this service (ids only): late events about them are scrubbed."""

    def __init__(self, metadata: MetaData):
        self.table = Table(
            "erased_customers",
            metadata,
            Column("customer_id", String(36), primary_key=True),
            Column("erasure_id", String(36), nullable=False),
            Column("erased_at", UTCDateTime, nullable=False),
        )

    async def add(self, session: AsyncSession, erasure_id: str, ids: Collection[str]) -> None:
        now = utcnow()
        rows = [{"customer_id": cid, "erasure_id": erasure_id, "erased_at": now} for cid in ids]
        if rows:
            await session.execute(insert_ignoring(session, self.table, ["customer_id"]), rows)

    async def among(self, session: AsyncSession, ids: Collection[str]) -> set[str]:
        if not ids:
            return set()
        rows = await session.execute(_erased_among(self.table, dialect_name(session)), {"ids": list(ids)})
        return set(rows.scalars())


@cache
def _erased_among(table: Table, dialect: str) -> Select[Any]:
    """Built once: every event a consumer takes asks it."""
    return select(table.c.customer_id).where(one_of(table.c.customer_id, dialect))


def customer_rows(table: Table, ids: Sequence[str]) -> ColumnElement[bool] | None:
    """The condition selecting `table`'s rows of the customers `ids` (None: not tied to customers)."""

    link = customer_link(table)
    if link is None:
        return None
    column = table.c[link.column]
    if link.via is None:
        return column.in_(list(ids))
    parent_name, parent_customer = link.via
    assert table.metadata is not None
    parent = table.metadata.tables[parent_name]
    return column.in_(select(parent.c.id).where(parent.c[parent_customer].in_(list(ids))))


async def erase_tables(session: AsyncSession, metadata: MetaData, ids: Sequence[str]) -> dict[str, int]:
    """Erase the personal columns of every table tied to customers: rows erased per table."""

    counts: dict[str, int] = {}
    for table in metadata.sorted_tables:
        where = customer_rows(table, ids)
        columns = personal_columns(table)
        link = customer_link(table)
        if where is None or not columns or link is None:
            continue
        if link.erase == "delete":
            result = await session.execute(delete(table).where(where))
        else:
            values = {name: None if table.c[name].nullable else ERASED for name in columns}
            still_personal = or_(
                *(table.c[name].is_not(None) if table.c[name].nullable else table.c[name] != ERASED for name in columns)
            )
            result = await session.execute(update(table).where(where, still_personal).values(values))
        counts[table.name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts


def _mentions(session: AsyncSession, column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    """`column` (bytes) holds one of `ids`: a scan, but erasures are rare."""

    postgres = session.get_bind().dialect.name == "postgresql"
    where = f"{column.table.name}.{column.name}"
    found = "position(CAST(:{name} AS bytea) IN {where}) > 0" if postgres else "instr({where}, :{name}) > 0"
    return or_(
        *(
            text(found.format(name=f"id_{n}", where=where)).bindparams(**{f"id_{n}": cid.encode()})
            for n, cid in enumerate(ids)
        )
    )


async def scrub_messaging(session: AsyncSession, messaging: MessagingTables, ids: Sequence[str]) -> dict[str, int]:
    """Rewrite the outbox and dead-letter rows about `ids` with their events scrubbed
    (an outbox bundle line by line); the inbox holds event ids only. Rows changed per table."""

    counts = {}
    outbox = messaging.outbox
    changed = 0
    query = select(outbox.c.seq, outbox.c.event_id, outbox.c.body).where(_mentions(session, outbox.c.body, ids))
    rows = await session.execute(query)
    for seq, event_id, body in rows.all():
        events = outbox_events(event_id, body)
        scrubbed = [(eid, scrub_event_json(raw, ids)) for eid, raw in events]
        if all(new is None for _, new in scrubbed):
            continue
        parts = [(eid, new if new is not None else raw) for (eid, new), (_, raw) in zip(scrubbed, events)]
        new_body = parts[0][1] if body[:1] == b"{" else b"\n".join(eid.encode() + b" " + raw for eid, raw in parts)
        await session.execute(update(outbox).where(outbox.c.seq == seq).values(body=new_body))
        changed += 1
    counts[outbox.name] = changed
    dead = messaging.dead_letters
    changed = 0
    letters = await session.execute(select(dead.c.id, dead.c.body).where(_mentions(session, dead.c.body, ids)))
    for row_id, body in letters.all():
        new = scrub_event_json(body, ids)
        if new is not None:
            await session.execute(update(dead).where(dead.c.id == row_id).values(body=new, error=ERASED))
            changed += 1
    counts[dead.name] = changed
    return counts


async def erase_customer_data(
    session: AsyncSession,
    *,
    metadata: MetaData,
    messaging: MessagingTables,
    erased: ErasedCustomers,
    erasure_id: str,
    ids: Sequence[str],
    steps: Sequence[ErasureStep] = (),
) -> dict[str, int]:
    """The service's whole share of an erasure, in the caller's transaction: rows per table."""

    counts = await erase_tables(session, metadata, ids)
    for step in steps:
        counts.update(await step(session, list(ids)))
    counts.update(await scrub_messaging(session, messaging, ids))
    await erased.add(session, erasure_id, ids)
    checkpoint_after_commit(session)
    return counts


def erasure_consumer(
    *, metadata: MetaData, messaging: MessagingTables, erased: ErasedCustomers, steps: Sequence[ErasureStep] = ()
) -> ConsumerSpec:
    """The `<service>-erasures` consumer: erases the service's data of an erased customer
    (and of the customers merged into it) and reports with crm.<service>.customer.erasure_applied."""

    async def on_erased(session: AsyncSession, event: Event[CustomerErased]) -> None:
        ids = [event.data.customer_id, *event.data.merged_ids]
        counts = await erase_customer_data(
            session,
            metadata=metadata,
            messaging=messaging,
            erased=erased,
            erasure_id=event.data.erasure_id,
            ids=ids,
            steps=steps,
        )
        report(session, erasure_id=event.data.erasure_id, customer_id=event.data.customer_id, tables=counts)

    return ConsumerSpec(
        purpose="erasures",
        handlers={ERASED_SUBJECT: on_erased},
        description=(
            "Erases the personal data of an erased customer and of the customers merged into it (the columns "
            "marked personal, the outbox and dead letters), keeps the non-personal facts, and reports what it did."
        ),
        # The event names the survivor and its merged ids itself.
        follows_merges=False,
    )


def report(session: AsyncSession, *, erasure_id: str, customer_id: str, tables: dict[str, int]) -> None:
    """Emit crm.<service>.customer.erasure_applied: what this service did (counts only)."""

    service = session.info["service"]
    emit(
        session,
        erasure_applied_subject(service),
        {"erasure_id": erasure_id, "customer_id": customer_id, "tables": tables, "applied_at": utcnow()},
        subject=customer_id,
    )


# --- bytes SQLite keeps --------------------------------------------------------------------


def checkpoint_after_commit(session: AsyncSession) -> None:
    """Once the session's transaction commits, checkpoint and truncate the SQLite WAL, whose
    frames still hold the pages as they were before the erasure (nothing on PostgreSQL)."""

    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return
    engine = bind.engine  # a Connection's engine, or the Engine itself
    path = make_url(str(engine.url)).database
    if not path or path == ":memory:":
        return

    def after_commit(_session: Any) -> None:
        asyncio.get_running_loop().create_task(truncate_wal(path))

    event.listen(session.sync_session, "after_commit", after_commit, once=True)


async def truncate_wal(path: str, attempts: int = 50) -> bool:
    """`PRAGMA wal_checkpoint(TRUNCATE)` until no reader or writer holds it back."""

    def checkpoint() -> bool:
        connection = sqlite3.connect(path, timeout=5)
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return bool(busy == 0)
        finally:
            connection.close()

    for _ in range(attempts):
        try:
            if await asyncio.to_thread(checkpoint):
                return True
        except sqlite3.OperationalError:
            pass
        await asyncio.sleep(0.1)
    log.warning("WAL checkpoint after an erasure kept being held back", extra={"database": path})
    return False


async def engine_truncate_wal(engine: AsyncEngine) -> bool:
    """truncate_wal for an engine's database (True on PostgreSQL: nothing to do)."""

    if engine.dialect.name != "sqlite":
        return True
    path = make_url(str(engine.url)).database
    if not path or path == ":memory:":
        return True
    return await truncate_wal(str(path))
