"""The employees consumer: network's employee stakeholders, whom conversations are assigned to."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.conversations import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_stakeholders(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.remember_employees(session, events)


EMPLOYEES = ConsumerSpec(
    purpose="employees",
    batch_handler=on_stakeholders,
    subjects=("crm.network.stakeholder.created",),
    description="Remembers network's employee stakeholders, who may be assigned conversations and write messages.",
)
