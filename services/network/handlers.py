"""network's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import service
from shared.consumer import ConsumerSpec
from shared.customer_aliases import merges_consumer
from shared.events import CloudEvent


async def on_customers_created(session: AsyncSession, events: list[CloudEvent]) -> None:
    await service.customers_created(session=session, events=events)


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_customers_created,
    subjects=("crm.identify.customer.created",),
    description=(
        "Remembers every customer identify created and, when it was referred by another, "
        "records the referral and emits crm.network.referral.recorded."
    ),
)

MERGES = merges_consumer(
    service.follow_merge,
    (
        "Follows identify's merges: referrals of the merged customers (as referrer or referred) move to the "
        "survivor, a referral the merge turns into a self-referral is dropped; later events of a merged id go "
        "to the survivor."
    ),
)

CONSUMERS = [REFERRALS, MERGES]
