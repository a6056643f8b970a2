"""The survey rules' consumer: after a touchpoint, the surveys whose rules name its type."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.feedback import service
from services.engage.feedback.triggers import TRIGGERS
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_touchpoints(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.on_touchpoints(session=session, events=events)


SURVEYS = ConsumerSpec(
    purpose="surveys",
    batch_handler=on_touchpoints,
    subjects=tuple(TRIGGERS),
    description="Sends the surveys whose rules name a touchpoint (a first purchase, a closed conversation, a "
    "solved ticket) to its customer, outside the quiet period and unless research consent was withdrawn.",
)
