"""Playbooks' event consumer: lifecycle's own stage changes start them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.playbooks import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import StageChanged
from shared.events.envelope import Event


async def on_stage_changes(session: AsyncSession, events: list[Event[StageChanged]]) -> None:
    await service.apply_stage_changes(session, events)


PLAYBOOKS = ConsumerSpec(
    purpose="playbooks",
    batch_handler=on_stage_changes,
    subjects=("crm.lifecycle.stage.changed",),
    description="Starts win-back and retention playbooks when a customer enters one of their trigger stages "
    "(not historical, after the playbook was enabled, last purchase within its look-back, predicted CLV at or "
    "above its threshold): the entry in treatment or holdout, value's offer and the outreach ticket asked for.",
)
