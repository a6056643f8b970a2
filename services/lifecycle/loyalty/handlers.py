"""The loyalty programme's consumer: the ledger follows purchases, refunds, voids, points offers
and value's answers to redemptions; value's offer templates; identify's CLV for CLV tiers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.loyalty import service
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event


async def on_loyalty_events(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.apply_events(session=session, events=events)


LOYALTY = ConsumerSpec(
    purpose="loyalty",
    batch_handler=on_loyalty_events,
    subjects=(
        "crm.identify.transaction.recorded",
        "crm.identify.transaction.refunded",
        "crm.identify.transaction.voided",
        "crm.identify.customer.scored",
        "crm.value.offer.issued",
        "crm.value.offer_template.changed",
        "crm.value.loyalty_redemption.refused",
    ),
    description="Keeps the loyalty points ledger: points earned per purchase, taken back by refunds (in "
    "proportion) and voids, credited by points offers, returned when value refuses a redemption; "
    "expires due points; re-judges tiers (CLV tiers from identify's scores); and knows which of "
    "value's offer templates are sold for points.",
)
