"""engage: interactions with customers and each customer's timeline across the suite."""

from __future__ import annotations

from services.engage.endpoints import router
from services.engage.feedback.endpoints import router as feedback_router
from services.engage.handlers import CONSUMERS
from services.engage.models import Base, messaging
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="engage",
    description="Customer engagement: interactions and the customer timeline built from every event about a customer.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[router, feedback_router, export_router(Base.metadata)],
    consumers=CONSUMERS,
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
