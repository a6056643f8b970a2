"""network's event consumers."""

from __future__ import annotations

from services.network.models import Base, aliases, erased_customers, known_customers, messaging
from services.network.referrals import handlers as referrals
from services.network.referrals import service as referrals_service
from services.network.stakeholders import handlers as stakeholders
from services.network.webhooks.service import follow_webhooks_merge
from shared.privacy.erasure import erasure_consumer

ERASURES = erasure_consumer(metadata=Base.metadata, messaging=messaging, erased=erased_customers)

CONSUMERS = aliases.consumers(
    [*referrals.CONSUMERS, ERASURES, stakeholders.PERFORMANCE],
    merge_steps=[
        known_customers.follow_merge,
        referrals_service.follow_merge,
        *stakeholders.MERGE_STEPS,
        follow_webhooks_merge,
    ],
    merges_description=(
        "Follows identify's merges: referrals of the merged customers (as referrer or referred) move to the "
        "survivor; a referral the merge turns into a self-referral, or a second referral of one person, is "
        "void (with the reason); their relations to stakeholders, purchases and scores move to the survivor "
        "(the same current relation held twice collapses, one account manager stays; the others end, "
        "announced); webhook delivery log rows about them name the survivor; later events of a merged id go "
        "to the survivor."
    ),
)
