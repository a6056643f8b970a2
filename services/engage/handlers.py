"""engage's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage import service
from services.engage.service import TIMELINE_SUBJECTS
from shared.consumer import ConsumerSpec
from shared.customer_aliases import merges_consumer
from shared.events import CloudEvent


async def on_customers_created(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.remember_customers(session=session, events=events)


async def on_events_about_customers(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.record_in_timeline(session=session, events=events)


# Both consumers take whole micro-batches: one INSERT per batch instead of one per event.
CUSTOMERS = ConsumerSpec(
    purpose="customers",
    batch_handler=on_customers_created,
    subjects=("crm.identify.customer.created",),
    description="Remembers the customers identify created, so interactions can be logged for them.",
)

TIMELINE = ConsumerSpec(
    purpose="timeline",
    batch_handler=on_events_about_customers,
    subjects=TIMELINE_SUBJECTS,
    description="Builds each customer's timeline from every event about the customer (a referral goes on both).",
)

MERGES = merges_consumer(
    service.follow_merge,
    (
        "Follows identify's merges: interactions and timeline entries of the merged customers move to the "
        "survivor, whose timeline records the merge; later events of a merged id go to the survivor."
    ),
)

CONSUMERS = [CUSTOMERS, TIMELINE, MERGES]
