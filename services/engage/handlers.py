"""engage's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage import service
from services.engage.service import TIMELINE_SUBJECTS
from shared.consumer import ConsumerSpec
from shared.events import CloudEvent


async def on_customer_created(session: AsyncSession, event: CloudEvent) -> None:
    await service.remember_customer(session=session, event=event)


async def on_event_about_a_customer(session: AsyncSession, event: CloudEvent) -> None:
    await service.record_in_timeline(session=session, event=event)


CUSTOMERS = ConsumerSpec(
    purpose="customers",
    handlers={"crm.identify.customer.created": on_customer_created},
    description="Remembers the customers identify created, so interactions can be logged for them.",
)

TIMELINE = ConsumerSpec(
    purpose="timeline",
    handlers={subject: on_event_about_a_customer for subject in TIMELINE_SUBJECTS},
    description="Builds each customer's timeline from every event about the customer (a referral goes on both).",
)

CONSUMERS = [CUSTOMERS, TIMELINE]
