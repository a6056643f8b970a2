"""network's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import service
from services.network.models import Base, aliases, erased_customers, known_customers, messaging
from services.network.webhooks.service import follow_webhooks_merge
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerCreated
from shared.events.envelope import Event
from shared.privacy.erasure import erasure_consumer


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

ERASURES = erasure_consumer(metadata=Base.metadata, messaging=messaging, erased=erased_customers)

CONSUMERS = aliases.consumers(
    [REFERRALS, ERASURES],
    merge_steps=[known_customers.follow_merge, service.follow_merge, follow_webhooks_merge],
    merges_description=(
        "Follows identify's merges: referrals of the merged customers (as referrer or referred) move to the "
        "survivor, a referral the merge turns into a self-referral is dropped; webhook delivery log rows about "
        "them name the survivor; later events of a merged id go "
        "to the survivor."
    ),
)
