"""Erasure rules: erase identify's share, keep the suppression entries, collect the reports,
and finish with the stream."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import repository as customers
from services.identify.customers.service import get_customer, refuse_merged, suppression_key
from services.identify.models import Base, Erasure, erased_customers, messaging
from services.identify.privacy import repository
from services.identify.privacy.stream import delete_events_about
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.db.uow import transaction
from shared.events.contracts import ErasureApplied
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import NotFound
from shared.privacy import suppression
from shared.privacy.erasure import engine_truncate_wal, erase_customer_data, report
from shared.service.runtime import Runtime
from shared.settings import SERVICES

log = logging.getLogger("valuechain.identify.erasures")

STREAM_POLL_S = 0.5


async def request_erasure(*, session: AsyncSession, customer_id: str) -> tuple[dict[str, Any], bool]:
    """Erase the customer (and those merged into it); `(report, created)`. A second request
    answers the first one's report; a merged customer is 409 naming its survivor."""

    # Two requests at once: the second waits for the first's commit on the customer's row
    # (PostgreSQL; SQLite's one writer serialises them anyway) and then finds its erasure,
    # instead of inserting a second one and failing on the unique customer id.
    await repository.lock_customer(session, customer_id)
    customer = await get_customer(session=session, customer_id=customer_id)
    existing = await repository.erasure_of_customer(session, customer_id)
    if existing is not None:
        return await erasure_report(session=session, erasure=existing), False
    refuse_merged(customer)
    merged = await repository.merged_into(session, customer_id)
    ids = [customer_id, *merged]
    now = utcnow()
    erasure = Erasure(id=uuid7(), customer_id=customer_id, merged_ids=merged, requested_at=now)
    session.add(erasure)
    await session.flush()
    key = suppression_key()
    await repository.add_suppressions(
        session,
        [
            {"digest": suppression.digest(key, kind, value), "kind": kind, "erasure_id": erasure.id, "created_at": now}
            for email, phone in await repository.match_keys(session, ids)
            for kind, value in (("email", email), ("phone", phone))
            if value
        ],
    )

    quoted = await repository.identities(session, ids)

    async def mark_and_reindex(session: AsyncSession, ids: list[str]) -> dict[str, int]:
        await customers.optimise_search_index(session)
        return {
            "customers.erased_at": await repository.mark_erased(session, ids, now),
            "import_rejections": await repository.delete_rejections_naming(session, quoted),
        }

    counts = await erase_customer_data(
        session,
        metadata=Base.metadata,
        messaging=messaging,
        erased=erased_customers,
        erasure_id=erasure.id,
        ids=ids,
        steps=[mark_and_reindex],
    )
    emit(
        session,
        "crm.identify.customer.erased",
        {"erasure_id": erasure.id, "customer_id": customer_id, "merged_ids": merged, "requested_at": now},
        subject=customer_id,
    )
    report(session, erasure_id=erasure.id, customer_id=customer_id, tables=counts)
    return await erasure_report(session=session, erasure=erasure), True


async def get_report(*, session: AsyncSession, erasure_id: str) -> dict[str, Any]:
    erasure = await repository.get_erasure(session, erasure_id)
    if erasure is None:
        raise NotFound(f"no erasure with id {erasure_id}")
    return await erasure_report(session=session, erasure=erasure)


async def erasure_report(*, session: AsyncSession, erasure: Erasure) -> dict[str, Any]:
    reported = {row.service: row for row in await repository.reports(session, erasure.id)}
    return {
        "id": erasure.id,
        "customer_id": erasure.customer_id,
        "merged_ids": erasure.merged_ids,
        "requested_at": erasure.requested_at,
        "complete": erasure.completed_at is not None,
        "completed_at": erasure.completed_at,
        "services": [
            {
                "service": name,
                "applied_at": reported[name].applied_at if name in reported else None,
                "tables": reported[name].tables if name in reported else {},
            }
            for name in SERVICES
        ],
        "stream": {"erased_at": erasure.stream_erased_at, "messages": erasure.stream_messages},
    }


async def record_report(*, session: AsyncSession, event: Event[ErasureApplied]) -> None:
    """A service's crm.<service>.customer.erasure_applied, kept for the erasure's report."""

    service = event.source.rsplit("/", 1)[-1]
    await repository.add_report(
        session,
        {
            "erasure_id": event.data.erasure_id,
            "service": service,
            "tables": event.data.tables,
            "applied_at": event.data.applied_at,
        },
    )


# --- the stream, once every service reported -------------------------------------------------


async def finish_erasures(runtime: Runtime[Any]) -> int:
    """Delete the stream's events about each erasure every service reported on, and mark it complete."""

    async with runtime.db.reader() as reader:  # polled: never the write lock for a look
        waiting = await repository.waiting_for_stream(reader, len(SERVICES))
    nc = runtime.bus.nc
    if not waiting or nc is None or not runtime.bus.is_connected:
        return 0
    for erasure in waiting:
        ids = [erasure.customer_id, *erasure.merged_ids]
        messages = await delete_events_about(nc, runtime.settings.stream, ids)
        async with transaction(runtime.db.writer) as session:
            await repository.complete(session, erasure.id, messages=messages, at=utcnow())
        await engine_truncate_wal(runtime.db.writer_engine)
        log.info("erasure complete", extra={"fields": {"erasure_id": erasure.id, "stream_messages": messages}})
    return len(waiting)


async def start(runtime: Runtime[Any]) -> None:
    """A start hook: the task that finishes erasures as their last report arrives."""

    async def loop() -> None:
        while True:
            try:
                await finish_erasures(runtime)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again at the next turn
                log.warning("finishing erasures failed, will retry", extra={"error": repr(exc)})
            await asyncio.sleep(STREAM_POLL_S)

    runtime.start_leased("erasures", loop)
