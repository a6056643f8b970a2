"""The referral programme's consumers: referrals recorded at signup, judged at the first purchase."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network.referrals import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerCreated, TransactionRecorded
from shared.events.envelope import Event


async def on_customers_created(session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    await service.customers_created(session=session, events=events)


async def on_purchases(session: AsyncSession, events: list[Event[TransactionRecorded]]) -> None:
    await service.purchases_recorded(session=session, events=events)


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_customers_created,
    subjects=("crm.identify.customer.created",),
    description=(
        "Remembers every customer identify created and, when it was referred by another, "
        "records the referral (pending) and emits crm.network.referral.recorded."
    ),
)

PURCHASES = ConsumerSpec(
    purpose="referral-purchases",
    batch_handler=on_purchases,
    subjects=("crm.identify.transaction.recorded",),
    description=(
        "Judges a pending referral by the referred customer's first purchase: within the programme's window "
        "it qualifies and the referrer's reward is announced (crm.network.referral.rewarded); after it, the "
        "referral is void."
    ),
)

CONSUMERS = [REFERRALS, PURCHASES]
