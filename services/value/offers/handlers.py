"""value's side of loyalty redemptions: issue the offer lifecycle's points paid for.

lifecycle debits the customer's points first and announces it
(crm.lifecycle.loyalty.points_redeemed); this consumer issues the template's offer
(crm.value.offer.issued naming the redemption). When value cannot (the template is
unknown or closed, its budget or the customer's cap is reached, or its points price is no
longer the one paid), it issues nothing and says why in
crm.value.loyalty_redemption.refused: lifecycle gives the points back.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.offers import service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import LoyaltyPointsRedeemed
from shared.events.envelope import Event


async def on_points_redeemed(session: AsyncSession, event: Event[LoyaltyPointsRedeemed]) -> None:
    await service.issue_redeemed(session=session, redemption=event.data)


REDEMPTIONS = ConsumerSpec(
    purpose="loyalty-redemptions",
    handlers={"crm.lifecycle.loyalty.points_redeemed": on_points_redeemed},
    description="Issues the offer a loyalty redemption paid for in lifecycle's points; when the template is "
    "closed, its budget or the customer's cap reached, or its points price changed, issues nothing and "
    "announces crm.value.loyalty_redemption.refused so lifecycle gives the points back.",
)
