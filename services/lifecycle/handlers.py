"""lifecycle's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle import service
from shared.consumer import ConsumerSpec
from shared.events import CloudEvent


async def on_customer_events(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.apply_events(session=session, events=events)


STAGES = ConsumerSpec(
    purpose="stages",
    batch_handler=on_customer_events,
    subjects=("crm.identify.customer.created", "crm.identify.transaction.recorded"),
    description="Moves each customer through the lifecycle stages as customers are created and buy.",
)

CONSUMERS = [STAGES]
