"""lifecycle: managing the customer lifecycle — stages from prospect onwards."""

from __future__ import annotations

from services.lifecycle.analytics.endpoints import router as analytics_router
from services.lifecycle.handlers import CONSUMERS
from services.lifecycle.loyalty import schedule as loyalty_schedule
from services.lifecycle.loyalty.endpoints import router as loyalty_router
from services.lifecycle.models import Base, messaging
from services.lifecycle.playbooks.endpoints import router as playbooks_router
from services.lifecycle.stages import sweeps
from services.lifecycle.stages.endpoints import router as stages_router
from services.lifecycle.tickets.endpoints import router as tickets_router
from services.lifecycle.tickets.handlers import start_sla_check
from shared.privacy.export import export_router
from shared.service.app import create_service_app
from shared.service.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="lifecycle",
    description="Managing the customer lifecycle: each customer's stage and how it got there.",
    metadata=Base.metadata,
    messaging=messaging,
    # The internal personal-data route a customer's export gathers (shared/privacy/export.py).
    routers=[
        stages_router,
        tickets_router,
        playbooks_router,
        loyalty_router,
        analytics_router,
        export_router(Base.metadata),
    ],
    consumers=CONSUMERS,
    # The stage sweep's schedule (and sweeps a stopped process left running marked failed), the
    # SLA check, the loyalty sweep.
    on_start=[sweeps.start, start_sla_check, loyalty_schedule.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
