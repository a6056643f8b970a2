"""network's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import service
from services.network.models import aliases, known_customers
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerCreated
from shared.events.envelope import Event


async def on_customers_created(session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
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

CONSUMERS = aliases.consumers(
    [REFERRALS],
    merge_steps=[known_customers.follow_merge, service.follow_merge],
    merges_description=(
        "Follows identify's merges: referrals of the merged customers (as referrer or referred) move to the "
        "survivor, a referral the merge turns into a self-referral is dropped; later events of a merged id go "
        "to the survivor."
    ),
)
