"""value's side of the referral programme: issue the reward network announced."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.referrals import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import ReferralRewarded
from shared.events.envelope import Event


async def on_referral_rewarded(session: AsyncSession, event: Event[ReferralRewarded]) -> None:
    await service.reward(session=session, rewarded=event.data)


REWARDS = ConsumerSpec(
    purpose="referral-rewards",
    handlers={"crm.network.referral.rewarded": on_referral_rewarded},
    description="Issues the referrer the reward network announced, once per referral: an offer of the "
    "programme's template (within its window, budget and cap; else nothing, and the reason is kept) or "
    "loyalty points (an offer of kind points, which lifecycle's ledger credits).",
)
