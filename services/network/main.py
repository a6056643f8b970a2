"""network: the value network — stakeholders (partners, suppliers, employees, investors) and customer referrals."""

from __future__ import annotations

from services.network.endpoints import router
from services.network.feed import stream as feed_stream
from services.network.feed.endpoints import router as feed_router
from services.network.handlers import CONSUMERS
from services.network.models import Base, messaging
from services.network.referrals.endpoints import router as referrals_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="network",
    description="The value network: stakeholders (partners, suppliers, employees, investors) and customer referrals.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[router, referrals_router, feed_router, export_router(Base.metadata)],
    consumers=CONSUMERS,
    on_start=[feed_stream.start],  # the event feed's own NATS connection, closed on stop
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
