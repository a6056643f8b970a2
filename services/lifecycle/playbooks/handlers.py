"""Playbooks' event consumers: lifecycle's own stage changes start them; network's relations name
the account managers who take their outreach tickets."""

from __future__ import annotations

from typing import Any

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


async def on_relations(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.apply_relations(session, events)


ACCOUNT_MANAGERS = ConsumerSpec(
    purpose="account-managers",
    batch_handler=on_relations,
    subjects=(service.RELATION_STARTED, service.RELATION_ENDED),
    description="Remembers each customer's current account manager (network's `account_manager_of` relations), "
    "who is assigned the customer's playbook outreach tickets.",
)
