"""value's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.value import service
from shared.consumer import ConsumerSpec
from shared.customer_aliases import merges_consumer
from shared.events import CloudEvent


async def on_customers_created(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.remember_customers(session=session, events=events)


async def on_stage_changes(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.welcome_new_buyers(session=session, events=events)


CUSTOMERS = ConsumerSpec(
    purpose="customers",
    batch_handler=on_customers_created,
    subjects=("crm.identify.customer.created",),
    description="Remembers the customers identify created, so offers can be issued to them.",
)

WELCOME = ConsumerSpec(
    purpose="welcome",
    batch_handler=on_stage_changes,
    subjects=("crm.lifecycle.stage.changed",),
    description="Issues a welcome offer, once, to each customer whose stage becomes `new` (a first purchase).",
)

MERGES = merges_consumer(
    service.follow_merge,
    (
        "Follows identify's merges: offers of the merged customers move to the survivor (which keeps one "
        "automatic offer of each kind); later events of a merged id go to the survivor."
    ),
)

CONSUMERS = [CUSTOMERS, WELCOME, MERGES]
