"""network's rules: referrals between customers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import repository
from services.network.models import Referral, aliases, known_customers
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.consumer import caused_by
from shared.events.contracts import CustomerCreated
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit

# --- customers and referrals -------------------------------------------------------------


async def customers_created(*, session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    """Remember a batch of customers in one statement; record the referrals among them.

    A customer created before a merge but read after it arrives naming the survivors.
    """

    await known_customers.remember_created(session, events)
    for event in events:
        if event.data.referred_by:
            with caused_by(event):
                await _record_referral(session=session, event=event)


async def _record_referral(*, session: AsyncSession, event: Event[CustomerCreated]) -> None:
    """Record who referred the customer and announce it.

    `recorded_at` is when network recorded the referral, never before the
    referred customer's `created_at` (so on a timeline the referral follows the
    customer's creation even when clocks disagree).
    """

    customer_id, created_at, referrer_id = event.data.id, event.at, event.data.referred_by
    if not referrer_id or referrer_id == customer_id:
        return
    if await repository.referral_of(session, customer_id) is not None:
        return  # the same customer announced again: its referral is already on record
    referral = Referral(
        id=uuid7(), referrer_id=referrer_id, referred_id=customer_id, recorded_at=max(utcnow(), created_at)
    )
    session.add(referral)
    await session.flush()
    emit(
        session,
        "crm.network.referral.recorded",
        {
            "id": referral.id,
            "referrer_id": referral.referrer_id,
            "referred_id": referral.referred_id,
            "recorded_at": referral.recorded_at,
        },
        subject=referral.referrer_id,
    )


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: referrals of merged customers become the survivor's.

    A customer is referred at most once: if several of the group were referred, the
    survivor keeps its own referral, else the earliest recorded one. A referral
    between members of the group would make the survivor refer itself: it goes.
    """

    survivor, merged = merge.survivor_id, merge.merged_ids
    group = {survivor, *merged}
    rows = await repository.referrals_touching(session, [survivor, *merged])

    def to_survivor(cid: str) -> str:
        return survivor if cid in group else cid

    referred = sorted(
        (r for r in rows if r["referred_id"] in group and to_survivor(r["referrer_id"]) != survivor),
        key=lambda r: (r["referred_id"] != survivor, r["recorded_at"], r["id"]),
    )
    keep = referred[0]["id"] if referred else None
    dropped, moved = [], []
    for row in rows:
        referrer, referred_id = to_survivor(row["referrer_id"]), to_survivor(row["referred_id"])
        if referrer == referred_id or (row["referred_id"] in group and row["id"] != keep):
            dropped.append(row["id"])
        elif (referrer, referred_id) != (row["referrer_id"], row["referred_id"]):
            moved.append({"key": row["id"], "referrer_id": referrer, "referred_id": referred_id})
    await repository.delete_referrals(session, dropped)
    await repository.repoint_referrals(session, moved)


async def referrals_by(*, session: AsyncSession, customer_id: str, after_id: str | None, limit: int):
    """Whom the customer referred, oldest first; 404 for a customer network never heard of."""

    rows = await repository.list_referrals(session, referrer_id=customer_id, after_id=after_id, limit=limit)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows
