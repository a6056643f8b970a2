"""lifecycle: managing the customer lifecycle — stages from prospect onwards."""

from __future__ import annotations

from services.lifecycle.handlers import CONSUMERS
from services.lifecycle.models import Base, messaging
from services.lifecycle.stages import sweeps
from services.lifecycle.stages.endpoints import router as stages_router
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="lifecycle",
    description="Managing the customer lifecycle: each customer's stage and how it got there.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[stages_router, export_router(Base.metadata)],
    consumers=CONSUMERS,
    # The stage sweep's schedule (and sweeps a stopped process left running marked failed).
    on_start=[sweeps.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
