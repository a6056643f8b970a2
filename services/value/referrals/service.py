"""Issuing referral rewards: network announces that a referral counted
(crm.network.referral.rewarded); value issues the referrer the reward it names, exactly once
per referral, whatever the bus redelivers: the referral's row in `referral_rewards` is taken
first (INSERT … ON CONFLICT DO NOTHING), and only the delivery that took it issues.

The reward is an offer of value's template (within its window, budget and per-customer cap,
as any offer of it), or loyalty points: an offer of kind `points` that lifecycle's ledger
credits from crm.value.offer.issued. When the template cannot issue, nothing is issued and
the row says why (docs/network.md "The referral programme").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value import repository as offers_repository
from services.value.models import profiles
from services.value.offers import service as offers
from services.value.offers.codes import new_codes
from services.value.referrals.models import ReferralReward
from services.value.service import NO_TEMPLATE
from shared.db.database import insert_ignoring, utcnow
from shared.db.ids import uuid7
from shared.events.contracts import ReferralRewarded
from shared.events.customer_aliases import Merge
from shared.events.messaging import emit
from shared.http.errors import Conflict

_rewards = ReferralReward.__table__


async def reward(*, session: AsyncSession, rewarded: ReferralRewarded) -> None:
    now = utcnow()
    claimed = await session.execute(
        insert_ignoring(session, _rewards, ["referral_id"]),
        [{"referral_id": rewarded.referral_id, "customer_id": rewarded.referrer_id, "outcome": "pending", "at": now}],
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        return  # rewarded already
    if rewarded.template_id is not None:
        offer_id, outcome = await _template_offer(session, rewarded)
    elif rewarded.points is not None:
        offer_id, outcome = await _points_offer(session, rewarded), "issued"
    else:
        offer_id, outcome = None, "no_reward"
    await session.execute(
        update(_rewards)
        .where(_rewards.c.referral_id == rewarded.referral_id)
        .values(offer_id=offer_id, outcome=outcome)
    )


async def _template_offer(session: AsyncSession, rewarded: ReferralRewarded) -> tuple[str | None, str]:
    assert rewarded.template_id is not None
    tpl = await offers.find_template(session, rewarded.template_id)
    if tpl is None:
        return None, "unknown_template"
    now = utcnow()
    try:
        offers.refuse_closed(tpl, now)
        if rewarded.referrer_id in await offers.at_cap(session, tpl, [rewarded.referrer_id]):
            raise Conflict("at the customer's cap", error="customer_cap")
        await offers.take_budget(session, tpl, 1)
    except Conflict as refused:
        return None, refused.error
    profile = await profiles.get(session, rewarded.referrer_id)
    segment = profile["segment"] if profile else None
    rows = await offers.issue(
        session, tpl, [(rewarded.referrer_id, segment)], now=now, referral_id=rewarded.referral_id
    )
    return rows[0]["id"], "issued"


async def _points_offer(session: AsyncSession, rewarded: ReferralRewarded) -> str:
    """An offer of loyalty points, issued without a template (lifecycle's ledger credits them)."""

    now = utcnow()
    offer_id = uuid7()
    row: dict[str, Any] = {
        "id": offer_id,
        "customer_id": rewarded.referrer_id,
        "kind": "points",
        "title": f"Referral reward: {rewarded.points} points",
        "discount_percent": None,
        "status": "issued",
        "automatic_kind": None,
        "issued_at": now,
        "expires_at": None,
        "redeemed_at": None,
        **NO_TEMPLATE,
        "coupon_code": new_codes(1)[0],
        "points": rewarded.points,
    }
    await offers_repository.insert_offers(session, [row])
    emit(
        session,
        offers.ISSUED,
        {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "kind": row["kind"],
            "title": row["title"],
            "issued_at": now,
            "coupon_code": row["coupon_code"],
            "points": row["points"],
            "referral_id": rewarded.referral_id,
        },
        subject=rewarded.referrer_id,
    )
    return offer_id


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged referrers' rewards become the survivor's."""

    await session.execute(
        update(_rewards).where(_rewards.c.customer_id.in_(merge.merged_ids)).values(customer_id=merge.survivor_id)
    )
