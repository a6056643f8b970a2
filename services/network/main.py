"""network: the value network — stakeholders (partners, resellers, suppliers, employees, investors,
owners) and their relations to customers, and customer referrals."""

from __future__ import annotations

from dataclasses import dataclass

from services.network.feed import stream as feed_stream
from services.network.feed.endpoints import router as feed_router
from services.network.handlers import CONSUMERS
from services.network.models import Base, messaging
from services.network.referrals.endpoints import router as referrals_router
from services.network.stakeholders.endpoints import router as stakeholders_router
from services.network.webhooks import delivery as webhook_delivery
from services.network.webhooks.endpoints import router as webhooks_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import Runtime, ServiceDefinition


@dataclass(frozen=True)
class NetworkState:
    """network's own long-lived objects (Runtime.state), built once the database is open."""

    webhooks: webhook_delivery.Dispatcher

    @classmethod
    def build(cls, runtime: Runtime[NetworkState]) -> NetworkState:
        return cls(webhooks=webhook_delivery.Dispatcher(runtime))


DEFINITION = ServiceDefinition[NetworkState](
    name="network",
    description=(
        "The value network: stakeholders (partners, resellers, suppliers, employees, investors, owners), "
        "their relations to customers, and customer referrals."
    ),
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[stakeholders_router, referrals_router, feed_router, webhooks_router, export_router(Base.metadata)],
    consumers=CONSUMERS,
    state=NetworkState.build,
    # The event feed's own NATS connection (closed on stop), and the webhook dispatcher.
    on_start=[feed_stream.start, webhook_delivery.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
