"""Stakeholders' consumer: what their customers are worth, from identify's events."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.network.stakeholders import service
from services.network.stakeholders.models import profiles
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_customer_values(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.apply_customer_values(session, events)


PERFORMANCE = ConsumerSpec(
    purpose="performance",
    batch_handler=on_customer_values,
    subjects=(service.RECORDED, service.REFUNDED, service.VOIDED, "crm.identify.customer.scored"),
    description=(
        "Keeps each customer's purchases in the reporting currency (refunds lower them, voids take them out) "
        "and identify's scores (segment, predicted CLV), for a stakeholder's customers and partner performance."
    ),
)

# The stakeholders' merge steps, in order (services/network/handlers.py runs them).
MERGE_STEPS = [service.follow_relations_merge, service.follow_purchases_merge, profiles.follow_merge]
