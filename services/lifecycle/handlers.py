"""lifecycle's event consumers."""

from __future__ import annotations

from services.lifecycle.models import Base, aliases, erased_customers, messaging, profiles
from services.lifecycle.stages import service as stages
from services.lifecycle.stages.handlers import SIGNALS, STAGES
from shared.privacy.erasure import erasure_consumer

PROFILES = profiles.consumer(
    "Keeps each customer's scores from identify (probability alive, expected purchases, CLV, kinds) and "
    "purchase count and dates, for the stage rules, churn risk, playbooks and loyalty tiers."
)

ERASURES = erasure_consumer(metadata=Base.metadata, messaging=messaging, erased=erased_customers)

CONSUMERS = aliases.consumers(
    [STAGES, SIGNALS, PROFILES, ERASURES],
    merge_steps=[stages.follow_merge, profiles.follow_merge],
    merges_description=(
        "Follows identify's merges: the survivor takes the most engaged stage of the group (or the one its "
        "combined purchases imply), the merged customers' histories and feedback and escalation signals; later "
        "events of a merged id go to the survivor."
    ),
)
