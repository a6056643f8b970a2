"""Retention analytics' consumer: the purchase months."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.analytics import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_purchases(session: AsyncSession, events: list[Event[service.Purchases]]) -> None:
    await service.apply_purchases(session=session, events=events)


ANALYTICS = ConsumerSpec(
    purpose="analytics",
    batch_handler=on_purchases,
    subjects=("crm.identify.transaction.recorded", "crm.identify.transaction.voided"),
    description="Keeps the months each customer bought in, for the cohort matrix and survival curve; "
    "a void takes its purchase out of its month.",
)
