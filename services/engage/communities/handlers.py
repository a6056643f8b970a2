"""The communities consumer: members join and leave segment, kind and stage communities as
identify's scores and lifecycle's stages change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.communities import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_scores_and_stages(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.follow_scores_and_stages(session, events)


COMMUNITIES = ConsumerSpec(
    purpose="communities",
    batch_handler=on_scores_and_stages,
    subjects=(service.SCORED, service.STAGE_CHANGED),
    description="Customers join and leave the communities of their RFM segment, kinds and lifecycle stage as "
    "identify's scores and lifecycle's stages change.",
)
