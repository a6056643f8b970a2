"""The referral programme's rules (docs/network.md "The referral programme").

identify resolves a referral code at signup into `referred_by` and announces it on
`crm.identify.customer.created`; here the referral is recorded (`pending`). It counts when
the referred customer's first purchase (`crm.identify.transaction.recorded`, the first network
sees for the referral) falls within the programme's window of their signup (`qualified`);
the referrer's reward is announced in the same transaction (`rewarded`,
`crm.network.referral.rewarded`), and value issues it. A first purchase after the window
voids the referral (`window_passed`). A merge that makes referrer and referred one customer
voids it (`self_referral`); one that joins two referred customers keeps one referral and
voids the others (`already_referred`). A later refund or void of the qualifying purchase
takes nothing back: the reward was announced with the purchase.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.network.models import aliases, known_customers
from services.network.referrals import repository
from services.network.referrals.schemas import ProgrammeUpdate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.consumer import caused_by
from shared.events.contracts import CustomerCreated, TransactionRecorded
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.settings import NetworkSettings, current_settings

RECORDED = "crm.network.referral.recorded"
REWARDED = "crm.network.referral.rewarded"


# --- the programme -----------------------------------------------------------------------


async def programme(session: AsyncSession) -> dict[str, Any]:
    """The programme's terms: the last PUT's, or the settings' defaults before any."""

    row = await repository.read_programme(session)
    if row is not None:
        return dict(row)
    settings = current_settings(NetworkSettings)
    return {
        "window_days": settings.referral_window_days,
        "reward_template_id": settings.referral_reward_template_id,
        "reward_points": settings.referral_reward_points,
        "updated_at": None,
    }


async def set_programme(*, session: AsyncSession, data: ProgrammeUpdate) -> dict[str, Any]:
    """New terms. They hold for referrals recorded from now on (the window) and for every
    reward announced from now on (the reward)."""

    row = {
        "window_days": data.window_days,
        "reward_template_id": data.reward_template_id,
        "reward_points": data.reward_points,
        "updated_at": utcnow(),
    }
    await repository.save_programme(session, row)
    return row


# --- recording: customer.created ---------------------------------------------------------


async def customers_created(*, session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    """Remember a batch of customers in one statement; record the referrals among them.

    A customer created before a merge but read after it arrives naming the survivors.
    """

    await known_customers.remember_created(session, events)
    referred = [event for event in events if event.data.referred_by]
    if not referred:
        return
    window = (await programme(session))["window_days"]
    for event in referred:
        with caused_by(event):
            await _record_referral(session=session, event=event, window_days=window)


async def _record_referral(*, session: AsyncSession, event: Event[CustomerCreated], window_days: int) -> None:
    """Record who referred the customer and announce it.

    `recorded_at` is when network recorded the referral, never before the
    referred customer's `created_at` (so on a timeline the referral follows the
    customer's creation even when clocks disagree).
    """

    customer_id, created_at, referrer_id = event.data.id, event.at, event.data.referred_by
    if not referrer_id or referrer_id == customer_id:
        return
    if await repository.live_referral_of(session, customer_id) is not None:
        return  # the same customer announced again: its referral is already on record
    row = {
        "id": uuid7(),
        "referrer_id": referrer_id,
        "referred_id": customer_id,
        "recorded_at": max(utcnow(), created_at),
        "signed_up_at": created_at,
        "status": "pending",
        "window_days": window_days,
    }
    await repository.add_referral(session, row)
    emit(
        session,
        RECORDED,
        {key: row[key] for key in ("id", "referrer_id", "referred_id", "recorded_at")},
        subject=referrer_id,
    )


# --- attribution: the first purchase -----------------------------------------------------


def qualifies_until(referral: Any) -> datetime | None:
    if referral["signed_up_at"] is None or referral["window_days"] is None:
        return None
    return referral["signed_up_at"] + timedelta(days=referral["window_days"])


async def purchases_recorded(*, session: AsyncSession, events: list[Event[TransactionRecorded]]) -> None:
    """Judge each pending referral by the referred customer's first purchase network sees.

    A refund recorded by older producers as a negative purchase is not a purchase."""

    purchases = [event for event in events if not event.data.amount.is_signed()]
    pending = await repository.pending_of(session, list({event.data.customer_id for event in purchases}))
    if not pending:
        return
    terms: dict[str, Any] | None = None
    for event in purchases:  # stream order: a customer's first purchase decides
        referral = pending.pop(event.data.customer_id, None)
        if referral is None:
            continue
        deadline = qualifies_until(referral)
        now = utcnow()
        if deadline is not None and event.at > deadline:
            await repository.change(
                session,
                referral["id"],
                status="void",
                void_reason="window_passed",
                voided_at=now,
                transaction_id=event.data.id,
            )
            continue
        terms = terms or await programme(session)
        template_id, points = terms["reward_template_id"], terms["reward_points"]
        if template_id is None and points is None:  # a programme without a reward: it counts, nothing to issue
            await repository.change(
                session, referral["id"], status="qualified", qualified_at=now, transaction_id=event.data.id
            )
            continue
        await repository.change(
            session,
            referral["id"],
            status="rewarded",
            qualified_at=now,
            transaction_id=event.data.id,
            rewarded_at=now,
            reward_template_id=template_id,
            reward_points=points,
        )
        with caused_by(event):
            emit(
                session,
                REWARDED,
                {
                    "referral_id": referral["id"],
                    "referrer_id": referral["referrer_id"],
                    "referred_id": referral["referred_id"],
                    "template_id": template_id,
                    "points": points,
                    "transaction_id": event.data.id,
                    "rewarded_at": now,
                },
                subject=referral["referrer_id"],
            )


# --- merges --------------------------------------------------------------------------------


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: referrals of merged customers become the survivor's.

    A customer is referred at most once: if several of the group were referred, the
    survivor keeps its own referral, else the earliest recorded one; the others are void
    (`already_referred`). A referral between members of the group would make the survivor
    refer itself: it is void (`self_referral`), whatever it had reached. A void referral
    keeps the referred id it had (the history of why) and moves its referrer to the survivor.
    """

    survivor, merged = merge.survivor_id, merge.merged_ids
    group = {survivor, *merged}
    rows = await repository.referrals_touching(session, [survivor, *merged])

    def to_survivor(cid: str) -> str:
        return survivor if cid in group else cid

    live = [r for r in rows if r["status"] in repository.LIVE]
    referred = sorted(
        (r for r in live if r["referred_id"] in group and to_survivor(r["referrer_id"]) != survivor),
        key=lambda r: (r["referred_id"] != survivor, r["recorded_at"], r["id"]),
    )
    keep = referred[0]["id"] if referred else None
    now = utcnow()
    voided, moved = [], []
    for row in rows:
        referrer, referred_id = to_survivor(row["referrer_id"]), to_survivor(row["referred_id"])
        reason = None
        if row["status"] in repository.LIVE:
            if referrer == referred_id:
                reason = "self_referral"
            elif row["referred_id"] in group and row["id"] != keep:
                reason = "already_referred"
        if reason is not None:
            voided.append({"key": row["id"], "referrer_id": referrer, "void_reason": reason, "voided_at": now})
        elif row["status"] not in repository.LIVE:
            if referrer != row["referrer_id"]:
                moved.append({"key": row["id"], "referrer_id": referrer, "referred_id": row["referred_id"]})
        elif (referrer, referred_id) != (row["referrer_id"], row["referred_id"]):
            moved.append({"key": row["id"], "referrer_id": referrer, "referred_id": referred_id})
    await repository.void(session, voided)
    await repository.repoint(session, moved)


# --- reading ---------------------------------------------------------------------------------


def present(row: Any) -> dict[str, Any]:
    rewarded = row["status"] == "rewarded" or row["rewarded_at"] is not None
    return {
        "id": row["id"],
        "referrer_id": row["referrer_id"],
        "referred_id": row["referred_id"],
        "recorded_at": row["recorded_at"],
        "status": row["status"],
        "qualifies_until": qualifies_until(row),
        "qualified_at": row["qualified_at"],
        "transaction_id": row["transaction_id"],
        "rewarded_at": row["rewarded_at"],
        "reward": ({"template_id": row["reward_template_id"], "points": row["reward_points"]} if rewarded else None),
        "voided_at": row["voided_at"],
        "void_reason": row["void_reason"],
    }


async def referrals_by(*, session: AsyncSession, customer_id: str, after_id: str | None, limit: int):
    """Whom the customer referred, oldest first; 404 for a customer network never heard of."""

    rows = await repository.list_referrals(session, referrer_id=customer_id, after_id=after_id, limit=limit)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return [present(row) for row in rows]


async def list_referrals(*, session: AsyncSession, after_id: str | None, limit: int, **filters: Any):
    rows = await repository.list_referrals(session, after_id=after_id, limit=limit, **filters)
    return [present(row) for row in rows]
