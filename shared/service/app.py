"""The scaffolding every stage service shares: `create_service_app()` assembles it.

The app's lifespan starts the service's runtime (shared.service.runtime: database, NATS, the
outbox relay, the consumers, the service's state and start hooks); every client
error renders as {"error", "detail"} (shared.http.error_handlers); a request passes
through the request context (shared.http.middleware: the internal secret, ids, metrics,
access log): a service answers only requests that carry the gateway's internal secret
(shared.internal_auth), but for `/healthz` and `/readyz`. Health
(`/healthz`), readiness (`/readyz`), metrics (`/metrics`, shared.http.health) and the
dead-letter listing (`/v1/ops/dead-letters`, shared.http.dead_letters) come with it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from shared.http import fast_reads
from shared.http.dead_letters import dead_letters_router
from shared.http.error_handlers import install_error_handlers
from shared.http.health import health_router
from shared.http.middleware import RequestContextMiddleware
from shared.http.openapi_contract import document_api
from shared.http.query_params import UnknownQueryGuard
from shared.internal_auth import InternalSecret, load_or_create_internal_secret
from shared.observability.logs import configure_logging
from shared.service.runtime import ServiceDefinition, start_runtime, stop_runtime
from shared.service.tuning import frozen_heap, tune_interpreter
from shared.settings import ServiceSettings, service_settings, set_current


def create_service_app(definition: ServiceDefinition[Any], settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or service_settings(definition.name)
    configure_logging(definition.name, settings.log_level)
    tune_interpreter(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Started in a context where the settings are current: the relay, the consumers
        # and whatever the start hooks launch inherit it (requests get it from the middleware).
        started = contextvars.copy_context()
        started.run(set_current, settings)
        app.state.runtime = await asyncio.create_task(start_runtime(definition, settings), context=started)
        app.state.light_reads = fast_reads.install(app)  # at start-up, when every route is there
        try:
            with frozen_heap():
                yield
        finally:
            await stop_runtime(app.state.runtime)

    app = FastAPI(
        title=f"Value Chain CRM — {definition.name}",
        description=definition.description,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served offline by document_api() below
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = None
    app.state.light_reads = None
    install_error_handlers(app)
    app.add_middleware(UnknownQueryGuard, fastapi_app=app)  # inside the request context: ids, metrics, log
    app.add_middleware(
        RequestContextMiddleware,
        metrics_getter=lambda: getattr(app.state.runtime, "metrics", None),
        light_reads_getter=lambda: app.state.light_reads,
        settings=settings,
        internal=InternalSecret(load_or_create_internal_secret(settings)),  # only the gateway gets in
    )
    app.include_router(health_router())
    app.include_router(dead_letters_router(definition.messaging))
    for router in definition.routers:
        app.include_router(router)
    document_api(app)
    return app
