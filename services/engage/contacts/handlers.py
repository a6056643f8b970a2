"""The contacts consumer: identify's customer details, as engage needs them to reach people."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.contacts import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_customer_details(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.remember(session, events)


CONTACTS = ConsumerSpec(
    purpose="contacts",
    batch_handler=on_customer_details,
    subjects=("crm.identify.customer.created", "crm.identify.customer.updated"),
    description="Keeps each customer's email, phone and name (engage's contact read model), "
    "so messages reach them and inbound mail finds its customer.",
)
