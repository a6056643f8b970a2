"""identify's consumer: referrals recorded by network, the evidence for benchmark customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import ReferralSeen
from services.identify.portfolio.scoring import rescore_customers
from shared.consumer import ConsumerSpec
from shared.db import insert_ignoring
from shared.events import CloudEvent


async def on_referrals(session: AsyncSession, events: list[CloudEvent]) -> None:
    rows = [
        {
            "id": event.data["id"],
            "referrer_id": event.data["referrer_id"],
            "referred_id": event.data["referred_id"],
            "recorded_at": datetime.fromisoformat(event.data["recorded_at"]),
        }
        for event in events
    ]
    await session.execute(insert_ignoring(session, ReferralSeen.__table__, ["id"]), rows)
    await rescore_customers(session, {row["referrer_id"] for row in rows})


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_referrals,
    subjects=("crm.network.referral.recorded",),
    description="Keeps the referrals network recorded, the evidence for benchmark customers, and re-scores the referrer.",
)
