"""lifecycle's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle import service
from services.lifecycle.models import aliases
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_customer_events(session: AsyncSession, events: list[Event[service.Purchases]]) -> None:
    await service.apply_events(session=session, events=events)


STAGES = ConsumerSpec(
    purpose="stages",
    batch_handler=on_customer_events,
    subjects=("crm.identify.customer.created", "crm.identify.transaction.recorded", "crm.identify.transaction.voided"),
    description="Moves each customer through the lifecycle stages as customers are created and buy; a voided "
    "purchase lowers the purchase count but never moves a stage back.",
)

CONSUMERS = aliases.consumers(
    [STAGES],
    merge_steps=[service.follow_merge],
    merges_description=(
        "Follows identify's merges: the survivor takes the most advanced stage of the group (or the one its "
        "combined purchases imply) and the merged customers' histories; later events of a merged id go to the survivor."
    ),
)
