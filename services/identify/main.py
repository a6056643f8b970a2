"""identify: customer portfolio analysis — customers and their transactions."""

from __future__ import annotations

from dataclasses import dataclass

from services.identify.customers.endpoints import router as customers_router
from services.identify.imports import endpoints as imports
from services.identify.imports import service as import_jobs
from services.identify.models import Base, messaging
from services.identify.money.endpoints import router as money_router
from services.identify.portfolio import refits
from services.identify.portfolio.endpoints import router as portfolio_router
from services.identify.portfolio.handlers import HELPFULNESS, REFERRALS, SERVICE_COSTS, SHIPPED_IDEAS
from services.identify.privacy import service as erasures
from services.identify.privacy.endpoints import export as privacy_export
from services.identify.privacy.endpoints import router as privacy_router
from services.identify.privacy.handlers import REPORTS
from services.identify.resolution.endpoints import router as resolution_router
from services.identify.search.endpoints import router as search_router
from services.identify.transactions.endpoints import corrections_router
from services.identify.transactions.endpoints import router as transactions_router
from shared.service.app import create_service_app
from shared.service.runtime import Runtime, ServiceDefinition


@dataclass(frozen=True)
class IdentifyState:
    """identify's own long-lived objects (Runtime.state), built once the database is open."""

    refits: refits.RefitRunner

    @classmethod
    def build(cls, runtime: Runtime[IdentifyState]) -> IdentifyState:
        return cls(refits=refits.RefitRunner(runtime))


DEFINITION = ServiceDefinition[IdentifyState](
    name="identify",
    description="Customer portfolio analysis: customers, transactions, their value and who matters most.",
    metadata=Base.metadata,
    messaging=messaging,
    # search first: its /v1/customers/export before customers' /v1/customers/{customer_id}.
    # The order is the API's published order (/openapi.json): refunds and voids after money's rates.
    routers=[
        search_router,
        customers_router,
        transactions_router,
        resolution_router,
        portfolio_router,
        imports.router,
        money_router,
        corrections_router,
        privacy_router,
        privacy_export,
    ],
    consumers=[REFERRALS, SHIPPED_IDEAS, HELPFULNESS, SERVICE_COSTS, REPORTS],
    state=IdentifyState.build,
    on_start=[refits.start, import_jobs.reap_interrupted_imports, import_jobs.warm_workers, erasures.start],
)


def create_app(settings=None):
    return create_service_app(DEFINITION, settings)
