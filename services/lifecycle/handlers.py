"""lifecycle's event consumers."""

from __future__ import annotations

from services.lifecycle.analytics import handlers as analytics
from services.lifecycle.analytics import service as analytics_service
from services.lifecycle.loyalty import handlers as loyalty
from services.lifecycle.loyalty import service as loyalty_service
from services.lifecycle.models import Base, aliases, erased_customers, messaging, profiles
from services.lifecycle.playbooks import service as playbooks
from services.lifecycle.playbooks.handlers import ACCOUNT_MANAGERS, PLAYBOOKS
from services.lifecycle.stages import service as stages
from services.lifecycle.stages.handlers import SIGNALS, STAGES
from services.lifecycle.tickets import handlers as tickets
from services.lifecycle.tickets import service as tickets_service
from shared.privacy.erasure import erasure_consumer

PROFILES = profiles.consumer(
    "Keeps each customer's scores from identify (probability alive, expected purchases, CLV, kinds) and "
    "purchase count and dates, for the stage rules, churn risk, playbooks and loyalty tiers."
)

ERASURES = erasure_consumer(metadata=Base.metadata, messaging=messaging, erased=erased_customers)

CONSUMERS = aliases.consumers(
    [
        STAGES,
        SIGNALS,
        PROFILES,
        ERASURES,
        tickets.EMPLOYEES,
        tickets.OUTREACH,
        PLAYBOOKS,
        ACCOUNT_MANAGERS,
        loyalty.LOYALTY,
        analytics.ANALYTICS,
    ],
    merge_steps=[
        stages.follow_merge,
        profiles.follow_merge,
        tickets_service.follow_tickets_merge,
        playbooks.follow_playbooks_merge,
        playbooks.follow_account_managers_merge,
        loyalty_service.follow_loyalty_merge,
        analytics_service.follow_merge,
    ],
    merges_description=(
        "Follows identify's merges: the survivor takes the most engaged stage of the group (or the one its "
        "combined purchases imply), the merged customers' histories, feedback and escalation signals, their "
        "tickets (with their comments and history), their playbook entries and account manager, their loyalty "
        "ledgers (balances add up) and their purchase months (the earliest month their cohort); later events of "
        "a merged id go to the survivor."
    ),
)
