"""engage's event consumers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage import service
from services.engage.communities import service as communities
from services.engage.communities.handlers import COMMUNITIES
from services.engage.consent import service as consent
from services.engage.contacts import service as contacts
from services.engage.contacts.handlers import CONTACTS
from services.engage.conversations import service as conversations
from services.engage.conversations.handlers import EMPLOYEES
from services.engage.feedback import service as feedback
from services.engage.feedback.handlers import SURVEYS
from services.engage.models import Base, aliases, erased_customers, known_customers, messaging, profiles
from services.engage.outbound.handlers import REQUESTS
from services.engage.service import TIMELINE_SUBJECTS
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event
from shared.privacy.erasure import erasure_consumer


async def on_events_about_customers(session: AsyncSession, events: list[Event[Any]]) -> None:
    await service.record_in_timeline(session=session, events=events)


# Both consumers take whole micro-batches: one INSERT per batch instead of one per event.
CUSTOMERS = known_customers.consumer(
    "Remembers the customers identify created, so interactions can be logged for them."
)

TIMELINE = ConsumerSpec(
    purpose="timeline",
    batch_handler=on_events_about_customers,
    subjects=TIMELINE_SUBJECTS,
    description="Builds each customer's timeline from every event about the customer (a referral goes on both).",
)

PROFILES = profiles.consumer(
    "Keeps each customer's segment, kinds and CLV (identify's scores), stage (lifecycle) and purchase "
    "dates, for survey answers and communities."
)

ERASURES = erasure_consumer(metadata=Base.metadata, messaging=messaging, erased=erased_customers)

CONSUMERS = aliases.consumers(
    [CUSTOMERS, CONTACTS, TIMELINE, PROFILES, REQUESTS, COMMUNITIES, EMPLOYEES, SURVEYS, ERASURES],
    merge_steps=[
        known_customers.follow_merge,
        contacts.follow_merge,
        profiles.follow_merge,
        service.follow_merge,
        consent.follow_merge,
        communities.follow_merge,
        conversations.follow_merge,
        feedback.follow_merge,
    ],
    merges_description=(
        "Follows identify's merges: interactions, timeline entries, conversations and messages of the merged "
        "customers move to the survivor, whose timeline records the merge; so do their consent ledger entries "
        "(the survivor's consent per purpose and channel being the newest of theirs), community memberships, "
        "posts and helpful marks (its helpful-mark total announced again), survey responses and invitations; "
        "later events of a merged id go to the survivor."
    ),
)
