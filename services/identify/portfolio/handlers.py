"""identify's consumer: referrals recorded by network, the evidence for benchmark customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import repository
from services.identify.models import ReferralSeen
from services.identify.portfolio.scoring import rescore_customers
from shared.consumer import ConsumerSpec
from shared.db import insert_ignoring
from shared.events import CloudEvent


async def on_referrals(session: AsyncSession, events: list[CloudEvent]) -> None:
    # A referral network announced before a merge may arrive after it: it counts for
    # the survivor, as network itself (and the merge's repointing) has it.
    named = {event.data[key] for event in events for key in ("referrer_id", "referred_id")}
    survivor = await repository.survivors(session, named)
    rows = []
    for event in events:
        referrer = survivor.get(event.data["referrer_id"], event.data["referrer_id"])
        referred = survivor.get(event.data["referred_id"], event.data["referred_id"])
        if referrer == referred:
            continue  # the merge made it a self-referral, which the merge drops too
        rows.append({
            "id": event.data["id"],
            "referrer_id": referrer,
            "referred_id": referred,
            "recorded_at": datetime.fromisoformat(event.data["recorded_at"]),
        })
    if not rows:
        return
    await session.execute(insert_ignoring(session, ReferralSeen.__table__, ["id"]), rows)
    await rescore_customers(session, {row["referrer_id"] for row in rows})


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_referrals,
    subjects=("crm.network.referral.recorded",),
    description="Keeps the referrals network recorded, the evidence for benchmark customers, and re-scores the referrer.",
)
