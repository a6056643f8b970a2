"""value: developing the value proposition — offers, manual and automatic."""

from __future__ import annotations

from services.value.campaigns import schedule as campaign_schedule
from services.value.campaigns.endpoints import router as campaigns_router
from services.value.endpoints import router
from services.value.handlers import CONSUMERS
from services.value.ideas.endpoints import router as ideas_router
from services.value.models import Base, messaging
from services.value.nbo.endpoints import router as next_best_offer_router
from services.value.offers.endpoints import router as offer_templates_router
from services.value.perceived.endpoints import router as perceived_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="value",
    description="Developing the value proposition: personalised offers (templates with coupon codes, budgets "
    "and caps, and the automatic welcome offer), and campaigns measured against a holdout.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[
        router,
        offer_templates_router,
        campaigns_router,
        perceived_router,
        ideas_router,
        next_best_offer_router,
        export_router(Base.metadata),
    ],
    consumers=CONSUMERS,
    # Scheduled campaigns launch at their time.
    on_start=[campaign_schedule.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
