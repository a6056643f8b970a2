"""network's rules: stakeholders, and referrals between customers."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import repository
from services.network.models import Referral, Stakeholder, known_customers
from services.network.schemas import StakeholderCreate
from shared.consumer import caused_by
from shared.db import utcnow
from shared.errors import NotFound
from shared.events import CloudEvent
from shared.ids import uuid7
from shared.messaging import emit

# --- stakeholders --------------------------------------------------------------------


async def create_stakeholder(*, session: AsyncSession, data: StakeholderCreate) -> Stakeholder:
    stakeholder = Stakeholder(
        id=uuid7(),
        kind=data.kind,
        name=data.name,
        email=data.email,
        organisation=data.organisation,
        notes=data.notes,
        created_at=utcnow(),
    )
    session.add(stakeholder)
    await session.flush()
    # Not about a customer: the CloudEvent has no subject.
    emit(
        session,
        "crm.network.stakeholder.created",
        {field: getattr(stakeholder, field) for field in ("id", "kind", "name", "email", "created_at")},
    )
    return stakeholder


async def get_stakeholder(*, session: AsyncSession, stakeholder_id: str):
    stakeholder = await repository.read_stakeholder(session, stakeholder_id)
    if stakeholder is None:
        raise NotFound(f"no stakeholder with id {stakeholder_id}")
    return stakeholder


# --- customers and referrals -------------------------------------------------------------


def _aware(raw) -> datetime:
    value = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


async def customers_created(*, session: AsyncSession, events: list[CloudEvent]) -> None:
    """Remember a batch of customers in one statement; record the referrals among them."""

    await known_customers.remember_created(session, events)
    for event in events:
        if event.data.get("referred_by"):
            with caused_by(event):
                await _record_referral(session=session, event=event)


async def _record_referral(*, session: AsyncSession, event: CloudEvent) -> None:
    """Record who referred the customer and announce it.

    `recorded_at` is when network recorded the referral, never before the
    referred customer's `created_at` (so on a timeline the referral follows the
    customer's creation even when clocks disagree).
    """

    data = event.data
    customer_id = data["id"]
    created_at = _aware(data["created_at"])
    referrer_id = data.get("referred_by")
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


async def referrals_by(*, session: AsyncSession, customer_id: str, after_id: str | None, limit: int):
    """Whom the customer referred, oldest first; 404 for a customer network never heard of."""

    rows = await repository.list_referrals(session, referrer_id=customer_id, after_id=after_id, limit=limit)
    if not rows and not await known_customers.contains(session, customer_id):
        raise NotFound(f"no customer with id {customer_id}")
    return rows
