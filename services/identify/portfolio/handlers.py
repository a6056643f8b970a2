"""identify's consumers of evidence for the strategically significant kinds: referrals recorded
by network and helpful marks in engage's communities (benchmark customers); ideas value shipped
(inspiration customers). And of lifecycle's service costs, subtracted in each customer's CLV."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import repository
from services.identify.models import ReferralSeen, ServiceCostSeen, ShippedIdeaSeen
from services.identify.portfolio import repository as portfolio
from services.identify.portfolio.scoring import rescore_customers
from services.identify.settings import portfolio_settings
from shared.db.database import insert_ignoring
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import HelpfulnessChanged, IdeaShipped, ReferralRecorded, ServiceCostRecorded
from shared.events.envelope import Event


async def on_referrals(session: AsyncSession, events: list[Event[ReferralRecorded]]) -> None:
    # A referral network announced before a merge may arrive after it: it arrives naming
    # the survivors (identify's customers are its alias table), as network itself has it.
    rows = []
    for event in events:
        referral = event.data
        if referral.referrer_id == referral.referred_id:
            continue  # the merge made it a self-referral, which the merge drops too
        rows.append(
            {
                "id": referral.id,
                "referrer_id": referral.referrer_id,
                "referred_id": referral.referred_id,
                "recorded_at": event.at,
            }
        )
    if not rows:
        return
    await session.execute(insert_ignoring(session, ReferralSeen.__table__, ["id"]), rows)
    await rescore_customers(session, {row["referrer_id"] for row in rows})


REFERRALS = ConsumerSpec(
    purpose="referrals",
    batch_handler=on_referrals,
    subjects=("crm.network.referral.recorded",),
    survivors=repository.survivors,
    description=(
        "Keeps the referrals network recorded, the evidence for benchmark customers, and re-scores the referrer."
    ),
)


async def on_shipped_ideas(session: AsyncSession, events: list[Event[IdeaShipped]]) -> None:
    # An idea shipped before its proposer's merge and read after it names the survivor.
    rows = [{"idea_id": e.data.idea_id, "customer_id": e.data.customer_id, "shipped_at": e.at} for e in events]
    await session.execute(insert_ignoring(session, ShippedIdeaSeen.__table__, ["idea_id"]), rows)
    await rescore_customers(session, {row["customer_id"] for row in rows})


SHIPPED_IDEAS = ConsumerSpec(
    purpose="ideas",
    batch_handler=on_shipped_ideas,
    subjects=("crm.value.idea.shipped",),
    survivors=repository.survivors,
    description=(
        "Keeps the ideas value shipped, the evidence for inspiration customers, and re-scores their proposers."
    ),
)


async def on_helpfulness(session: AsyncSession, events: list[Event[HelpfulnessChanged]]) -> None:
    # The newest total per customer of the batch (stream order), under the id engage named.
    newest: dict[str, dict] = {}
    for event in events:
        data = event.data
        newest[data.customer_id] = {
            "customer_id": data.customer_id,
            "helpful_marks": data.helpful_marks,
            "changed_at": event.at,
        }
    changed = await portfolio.record_helpful_marks(session, list(newest.values()))
    await rescore_customers(session, changed)


HELPFULNESS = ConsumerSpec(
    purpose="helpfulness",
    batch_handler=on_helpfulness,
    subjects=("crm.engage.community.helpfulness.changed",),
    # No survivors: a total is kept under the id engage announced; after a merge engage
    # announces the survivor's own (an old total of a merged id never lands on the survivor).
    description=(
        "Keeps each customer's helpful marks in engage's communities, evidence for benchmark customers, "
        "and re-scores the customer when the total changes."
    ),
)


async def on_service_costs(session: AsyncSession, events: list[Event[ServiceCostRecorded]]) -> None:
    # A cost in another currency than the reporting one is skipped (lifecycle's
    # VALUECHAIN_LIFECYCLE_SERVICE_COST_CURRENCY must be identify's reporting currency).
    currency = portfolio_settings().reporting_currency
    rows = [
        {
            "cost_id": e.data.cost_id,
            "customer_id": e.data.customer_id,
            "ticket_id": e.data.ticket_id,
            "amount": e.data.reporting_amount,
            "recorded_at": e.at,
        }
        for e in events
        if e.data.reporting_currency == currency
    ]
    if not rows:
        return
    await session.execute(insert_ignoring(session, ServiceCostSeen.__table__, ["cost_id"]), rows)
    await rescore_customers(session, {row["customer_id"] for row in rows})


SERVICE_COSTS = ConsumerSpec(
    purpose="service-costs",
    batch_handler=on_service_costs,
    subjects=("crm.lifecycle.service_cost.recorded",),
    survivors=repository.survivors,
    description=(
        "Keeps what serving each customer on lifecycle's tickets cost (in the reporting currency; another is "
        "skipped) and re-scores the customer: service costs are subtracted in the customer's CLV."
    ),
)
