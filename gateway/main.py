"""The API gateway app: `uvicorn gateway.main:create_app --factory` (or `python -m gateway`).

Layout of one request (details in gateway/proxy.py):

    uvicorn -> GatewayApp.__call__ -> GatewayFront (ids, CORS, auth, route table)
                                        |-- proxied /v1 route -> service pool (gateway/upstream.py)
                                        '-- anything else     -> FastAPI (health, readiness,
                                                                 metrics, OpenAPI, docs, 360)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from gateway.access.endpoints import router as access_router
from gateway.access.jwt import JwtVerifier
from gateway.access.resolver import AccessResolver
from gateway.audit.endpoints import router as audit_router
from gateway.audit.writer import AuditWriter
from gateway.auth import admin_key_path, load_or_create_admin_key
from gateway.composition import Customer360, CustomerNotFound, compose_360
from gateway.console import install_console
from gateway.exports import install_exports
from gateway.health import RotationKeeper, readiness
from gateway.observability import GatewayMetrics
from gateway.openapi import OpenAPIMerger
from gateway.principal import SCOPE_PRINCIPAL
from gateway.proxy import SCOPE_CORRELATION_ID, SCOPE_REQUEST_ID, GatewayFront
from gateway.routes import RouteTable
from gateway.schemas import router as schemas_router
from gateway.settings import SERVICES, GatewaySettings
from gateway.store import open_store
from gateway.upstream import Upstreams
from shared.http.docs_ui import install_docs
from shared.http.error_handlers import install_error_handlers
from shared.http.errors import NotFound, internal_error_body
from shared.http.query_params import UnknownQueryGuard
from shared.internal_auth import load_or_create_internal_secret
from shared.nats_auth import GATEWAY_USER, NatsCredentials, load_credentials
from shared.observability.logs import configure_logging

log = logging.getLogger("gateway")

TITLE = "Value Chain CRM API"
VERSION = "0.1.0"


class ORJSONBody(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class GatewayApp(FastAPI):
    """FastAPI, with HTTP requests entering through the gateway's own front."""

    front: GatewayFront

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def fastapi_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None, *, admin_key: str | None = None) -> GatewayApp:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)
    if admin_key is None:
        admin_key, created = load_or_create_admin_key(settings)
        if created:
            log.warning(
                "created a new admin API key",
                extra={"fields": {"path": str(admin_key_path(settings.var_dir).resolve())}},
            )

    table = RouteTable()
    access = AccessResolver(
        admin_key,
        cache_ttl_s=settings.key_cache_ttl_s,
        flush_s=settings.key_last_used_flush_s,
        jwt=jwt_verifier(settings),
    )
    metrics = GatewayMetrics()
    merger = OpenAPIMerger(
        table,
        cache_s=settings.openapi_cache_s,
        retry_s=settings.openapi_retry_s,
        timeout=settings.openapi_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
        upstreams = Upstreams(
            settings.service_urls(),
            connect_timeout=settings.connect_timeout_s,
            max_connections=settings.pool_max_connections,
            max_idle=settings.pool_max_idle,
            keepalive_expiry=settings.keepalive_expiry_s,
            max_response_bytes=settings.max_response_body_bytes,
            internal_secret=load_or_create_internal_secret(settings),
        )
        app.front.upstreams = upstreams
        # The rotation of services with several replicas (gateway/health.py).
        rotation = RotationKeeper(
            upstreams, interval=settings.replica_check_interval_s, timeout=settings.ready_timeout_s
        )
        rotation.start()
        # Migrated beforehand by `valuechain migrate` (the supervisor runs it before starting anything).
        store = app.state.store = open_store(settings.database_url)
        access.start(store)
        audit = app.front.audit = AuditWriter.from_settings(store, settings)
        audit.start()
        await exports.start(store)  # fails the jobs a crashed gateway left running, drops expired documents
        log.info("gateway started", extra={"fields": {"services": settings.service_urls(), "port": settings.port}})
        try:
            yield
        finally:
            await exports.stop()  # marks the jobs still gathering failed
            await rotation.stop()
            app.front.upstreams = None
            await upstreams.aclose()
            await access.stop()  # writes the last batch of key uses
            app.front.audit = None
            await audit.stop()  # writes what is still queued
            app.state.store = None
            await store.dispose()
            if app.front.access_log is not None:
                app.front.access_log.flush()

    app = GatewayApp(
        title=TITLE,
        version=VERSION,
        description="The Value Chain CRM API gateway: one entry point for the five services.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=ORJSONBody,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.route_table = table
    app.state.store = None  # the gateway's database, opened by the lifespan (gateway/store.py)
    app.state.access = access
    # The gateway's own routes (health, readiness, metrics, OpenAPI, docs, 360) refuse unknown
    # query parameters as the services do. Proxied routes are the services' to check: the
    # route table knows paths, not parameters, and the service's 422 comes back unchanged.
    app.add_middleware(UnknownQueryGuard, fastapi_app=app)
    app.front = GatewayFront(
        settings=settings,
        access=access,
        table=table,
        metrics=metrics,
        fallback=app.fastapi_call,
    )

    def nats_credentials() -> NatsCredentials:
        return load_credentials(settings.var_dir, GATEWAY_USER, settings.nats_password)

    def upstreams_or_503() -> Upstreams:
        upstreams = app.front.upstreams
        if upstreams is None:
            raise StarletteHTTPException(503, "gateway is not started")
        return upstreams

    install_error_handlers(app)  # the services' rendering of every error, {"error", "detail"}

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette sends this and re-raises; the front logs it (GatewayFront.__call__).
        request_id = request.scope.get(SCOPE_REQUEST_ID) or ""
        return Response(internal_error_body(request_id), status_code=500, media_type="application/json")

    # response_model=None: the return type is for mypy; the answer stays undeclared in the schema.
    @app.get("/healthz", tags=["gateway"], summary="Liveness: 200 while the process runs", response_model=None)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["gateway"],
        summary="Readiness: a replica of every service answers /readyz 200 and NATS is reachable",
        responses={503: {"description": "Something is not ready; `checks` says what"}},
    )
    async def readyz() -> ORJSONBody:
        ready, body = await readiness(
            upstreams_or_503(), list(SERVICES), settings.nats_url, settings.ready_timeout_s, nats_credentials
        )
        return ORJSONBody(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    def own_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
        return app.openapi_schema

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> ORJSONBody:
        return ORJSONBody(await merger.document(upstreams_or_503(), own_openapi()))

    # Swagger UI from the swagger-ui-bundle package, no CDN; like /openapi.json, no key needed.
    install_docs(app, openapi_url="/openapi.json", title=f"{TITLE} - docs")

    @app.get(
        "/v1/customers/{customer_id}/360",
        tags=["gateway"],
        summary="Customer 360: customer, lifecycle, recent timeline, offers and referrals in one answer",
        response_model=Customer360,
        responses={404: {"description": "No such customer (identify answered 404)"}},
    )
    async def customer_360(customer_id: str, request: Request) -> ORJSONBody:
        scope = request.scope
        if scope.get(SCOPE_PRINCIPAL) is None:  # only reachable through the front, which checks the key
            raise StarletteHTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        try:
            view = await compose_360(
                upstreams_or_503(),
                customer_id,
                request_id=scope.get(SCOPE_REQUEST_ID) or "",
                correlation_id=scope.get(SCOPE_CORRELATION_ID) or "",
                timeout=settings.composition_timeout_s,
                on_upstream_error=metrics.upstream_error,
            )
        except CustomerNotFound:
            raise NotFound(f"customer {customer_id} not found") from None
        return ORJSONBody(view)

    app.include_router(access_router)  # /v1/api-keys, /v1/me (gateway/access/endpoints.py)
    app.include_router(audit_router)  # GET /v1/audit, /v1/audit/verify
    app.include_router(schemas_router)  # GET /v1/schemas, the events' public JSON Schemas (public)
    exports = install_exports(  # GDPR exports (gateway/exports.py), started by the lifespan
        app,
        upstreams_or_503,
        timeout=settings.composition_timeout_s,
        retention_s=settings.export_retention_s,
        sweep_s=settings.export_sweep_s,
    )
    # An erasure also deletes the customer's export documents not yet downloaded.
    app.front.after_success[("POST", "/v1/customers/{id}/erasure")] = exports.after_erasure
    install_console(app, settings)  # /console/, the web app (gateway/console/), no key to load it
    return app


def jwt_verifier(settings: GatewaySettings) -> JwtVerifier | None:
    if not settings.jwt_jwks_url:
        return None
    return JwtVerifier(
        jwks_url=settings.jwt_jwks_url,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        role_claim=settings.jwt_role_claim,
        person_claim=settings.jwt_person_claim,
        algorithms=settings.jwt_algorithms,
        leeway_s=settings.jwt_leeway_s,
        jwks_cache_s=settings.jwt_jwks_cache_s,
    )
