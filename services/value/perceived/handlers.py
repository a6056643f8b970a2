"""The value map's consumer: attribute ratings from engage's surveys."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.perceived import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import FeedbackReceived
from shared.events.envelope import Event


async def on_feedback(session: AsyncSession, events: list[Event[FeedbackReceived]]) -> None:
    await service.record_feedback(session, events)


RATINGS = ConsumerSpec(
    purpose="ratings",
    batch_handler=on_feedback,
    subjects=("crm.engage.feedback.received",),
    description="Keeps the attribute ratings of us and competitors from engage's surveys, with the customer's "
    "segment when it answered, for the value map (which counts the ones it cannot map).",
)
