"""engage: interactions with customers and each customer's timeline across the suite."""

from __future__ import annotations

from dataclasses import dataclass

from services.engage.communities.endpoints import router as communities_router
from services.engage.consent.endpoints import router as consent_router
from services.engage.conversations.endpoints import router as conversations_router
from services.engage.endpoints import router
from services.engage.feedback.endpoints import router as feedback_router
from services.engage.handlers import CONSUMERS
from services.engage.inbound.endpoints import router as inbound_router
from services.engage.models import Base, messaging
from services.engage.outbound import sender
from services.engage.outbound.endpoints import router as outbound_router
from services.engage.templates.endpoints import router as templates_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import Runtime, ServiceDefinition


@dataclass(frozen=True)
class EngageState:
    """engage's own long-lived objects (Runtime.state), built once the database is open."""

    sender: sender.Sender

    @classmethod
    def build(cls, runtime: Runtime[EngageState]) -> EngageState:
        return cls(sender=sender.Sender(runtime))


DEFINITION = ServiceDefinition[EngageState](
    name="engage",
    description="Customer engagement: interactions and the customer timeline built from every event about a customer.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[
        router,
        conversations_router,
        inbound_router,
        consent_router,
        communities_router,
        outbound_router,
        templates_router,
        feedback_router,
        export_router(Base.metadata),
    ],
    consumers=CONSUMERS,
    state=EngageState.build,
    on_start=[sender.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
