"""network: the value network — stakeholders (partners, resellers, suppliers, employees, investors,
owners) and their relations to customers, and customer referrals."""

from __future__ import annotations

from services.network.feed import stream as feed_stream
from services.network.feed.endpoints import router as feed_router
from services.network.handlers import CONSUMERS
from services.network.models import Base, messaging
from services.network.referrals.endpoints import router as referrals_router
from services.network.stakeholders.endpoints import router as stakeholders_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="network",
    description=(
        "The value network: stakeholders (partners, resellers, suppliers, employees, investors, owners), "
        "their relations to customers, and customer referrals."
    ),
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[stakeholders_router, referrals_router, feed_router, export_router(Base.metadata)],
    consumers=CONSUMERS,
    on_start=[feed_stream.start],  # the event feed's own NATS connection, closed on stop
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
