"""value's event consumers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.value import service
from services.value.campaigns import handlers as campaigns
from services.value.campaigns import service as campaigns_service
from services.value.ideas import service as ideas
from services.value.models import Base, aliases, erased_customers, known_customers, messaging, profiles
from services.value.offers import handlers as offers
from services.value.perceived import handlers as perceived
from services.value.perceived import service as perceived_service
from services.value.referrals import handlers as referrals
from services.value.referrals import service as referrals_service
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerCreated, StageChanged
from shared.events.envelope import Event
from shared.privacy.erasure import erasure_consumer


async def on_stage_changes(session: AsyncSession, events: list[Event[Any]]) -> None:
    # In stream order: a customer's creation (suppressed or not) comes before its first stage change.
    created: list[Event[CustomerCreated]] = [e for e in events if e.type == service.CREATED]
    changes: list[Event[StageChanged]] = [e for e in events if e.type != service.CREATED]
    await service.remember_suppressed(session=session, events=created)
    await service.welcome_new_buyers(session=session, events=changes)


CUSTOMERS = known_customers.consumer("Remembers the customers identify created, so offers can be issued to them.")

WELCOME = ConsumerSpec(
    purpose="welcome",
    batch_handler=on_stage_changes,
    subjects=(service.CREATED, "crm.lifecycle.stage.changed"),
    description="Issues a welcome offer, once, to each customer whose stage becomes `new` (a first purchase), "
    "unless identify flagged the customer `suppressed` at creation or it was erased.",
)

PROFILES = profiles.consumer(
    "Keeps each customer's segment, kinds and CLV (identify's scores), stage (lifecycle) and purchase "
    "dates, for campaign audiences and next best offer."
)

ERASURES = erasure_consumer(
    metadata=Base.metadata, messaging=messaging, erased=erased_customers, steps=[service.suppress_erased]
)

CONSUMERS = aliases.consumers(
    [
        CUSTOMERS,
        WELCOME,
        PROFILES,
        ERASURES,
        perceived.RATINGS,
        *campaigns.CONSUMERS,
        offers.REDEMPTIONS,
        referrals.REWARDS,
    ],
    merge_steps=[
        known_customers.follow_merge,
        profiles.follow_merge,
        service.follow_merge,
        perceived_service.follow_ratings_merge,
        ideas.follow_ideas_merge,
        campaigns_service.follow_merge,
        referrals_service.follow_merge,
    ],
    merges_description=(
        "Follows identify's merges: offers of the merged customers move to the survivor (which keeps one "
        "automatic offer of each kind), and so do their value-map ratings, ideas, votes and comments (where "
        "two of them voted for one idea, one vote stays), campaign memberships (one per campaign), referral rewards, "
        "marketing consents (the newest per channel) and purchases; later events of a merged id go to the "
        "survivor."
    ),
)
