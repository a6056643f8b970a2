"""identify's consumer of the services' erasure reports."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.privacy import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import ErasureApplied, erasure_applied_subject
from shared.events.envelope import Event
from shared.settings import SERVICES


async def on_erasure_applied(session: AsyncSession, event: Event[ErasureApplied]) -> None:
    await service.record_report(session=session, event=event)


REPORTS = ConsumerSpec(
    purpose="erasures",
    handlers={erasure_applied_subject(name): on_erasure_applied for name in SERVICES},
    description="Collects what each service erased for an erasure, for its report (GET /v1/erasures/{id}); "
    "once all have reported, identify deletes the events about the customer from the stream.",
    follows_merges=False,
)
