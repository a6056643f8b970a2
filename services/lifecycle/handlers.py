"""lifecycle's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle import service
from shared.consumer import ConsumerSpec
from shared.customer_aliases import merges_consumer
from shared.events import CloudEvent


async def on_customer_events(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.apply_events(session=session, events=events)


STAGES = ConsumerSpec(
    purpose="stages",
    batch_handler=on_customer_events,
    subjects=("crm.identify.customer.created", "crm.identify.transaction.recorded", "crm.identify.transaction.voided"),
    description="Moves each customer through the lifecycle stages as customers are created and buy; a voided "
    "purchase lowers the purchase count but never moves a stage back.",
)

MERGES = merges_consumer(
    service.apply_merge,
    (
        "Follows identify's merges: the survivor takes the most advanced stage of the group (or the one its "
        "combined purchases imply) and the merged customers' histories; later events of a merged id go to the survivor."
    ),
)

CONSUMERS = [STAGES, MERGES]
