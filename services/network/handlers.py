"""network's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import service
from shared.consumer import ConsumerSpec
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

async def on_customer_merged(session: AsyncSession, event: CloudEvent) -> None:
    await service.follow_merge(session=session, event=event)


MERGES = ConsumerSpec(
    purpose="merges",
    handlers={"crm.identify.customer.merged": on_customer_merged},
    description=(
        "Follows identify's merges: referrals of the merged customers (as referrer or referred) move to the "
        "survivor, a referral the merge turns into a self-referral is dropped; later events of a merged id go "
        "to the survivor."
    ),
)

CONSUMERS = [REFERRALS, MERGES]
