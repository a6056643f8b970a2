"""network's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import service
from shared.consumer import ConsumerSpec
from shared.events import CloudEvent


async def on_customer_created(session: AsyncSession, event: CloudEvent) -> None:
    await service.customer_created(session=session, event=event)


REFERRALS = ConsumerSpec(
    purpose="referrals",
    handlers={"crm.identify.customer.created": on_customer_created},
    description=(
        "Remembers every customer identify created and, when it was referred by another, "
        "records the referral and emits crm.network.referral.recorded."
    ),
)

CONSUMERS = [REFERRALS]
