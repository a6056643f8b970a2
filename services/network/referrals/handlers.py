"""The referral programme's consumer: referrals recorded at signup, judged at the first purchase.

One consumer for both subjects, so it reads them in stream order: identify announces a
customer's creation before its purchases, and a referral must be on record before the
purchase that judges it is read (two consumers could read them in either order)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.network.referrals import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event

CREATED = "crm.identify.customer.created"
PURCHASED = "crm.identify.transaction.recorded"


async def on_customers_and_purchases(session: AsyncSession, events: list[Event[Any]]) -> None:
    for kind, run in groupby(events, key=lambda event: event.type):
        if kind == CREATED:
            await service.customers_created(session=session, events=list(run))
        else:
            await service.purchases_recorded(session=session, events=list(run))


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_customers_and_purchases,
    subjects=(CREATED, PURCHASED),
    description=(
        "Remembers every customer identify created and, when it was referred by another, records the "
        "referral (pending, crm.network.referral.recorded); judges it by the referred customer's first "
        "purchase: within the programme's window it qualifies and the referrer's reward is announced "
        "(crm.network.referral.rewarded), after it the referral is void."
    ),
)

CONSUMERS = [REFERRALS]
