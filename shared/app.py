"""The scaffolding every stage service shares.

`create_service_app()` builds a FastAPI app whose lifespan opens the database,
connects to NATS in the background, starts the outbox relay and the consumers,
and whose error handling renders every client error as {"error", "detail"}.
Health (`/healthz`), readiness (`/readyz`), metrics (`/metrics`) and the
dead-letter listing (`/v1/ops/dead-letters`) come with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Awaitable, Callable

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import MetaData, select, text
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import context, fast_reads
from shared.bus import Bus
from shared.consumer import ConsumerRunner, ConsumerSpec
from shared.db import Database
from shared.deps import SESSIONS_TO_CLOSE, ReadSession
from shared.errors import AppError
from shared.logs import configure_logging
from shared.messaging import MessagingTables
from shared.metrics import Metrics
from shared.openapi_contract import document_api
from shared.pagination import INTEGER, Page, PageParams, page_params
from shared.query_params import UnknownQueryGuard
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings, SuiteSettings, reset_current, service_settings, set_current

log = logging.getLogger("valuechain.app")


@dataclass
class ServiceDefinition:
    name: str
    description: str
    metadata: MetaData
    messaging: MessagingTables
    routers: list[APIRouter] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    # Called with the Runtime once the database is open (e.g. to fail jobs a restart
    # interrupted, or to start a schedule); they may add tasks to runtime.tasks.
    on_start: list[Callable[["Runtime"], Awaitable[None]]] = field(default_factory=list)


@dataclass
class Runtime:
    """What the lifespan builds and the request handlers use (typed app state)."""

    settings: ServiceSettings
    db: Database
    bus: Bus
    relay: OutboxRelay
    consumers: list[ConsumerRunner]
    metrics: Metrics
    tasks: list[asyncio.Task] = field(default_factory=list)


# --- errors ------------------------------------------------------------------


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in err.get("loc", ())), "message": err.get("msg"), "type": err.get("type")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError):
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        errors = _field_errors(exc)
        if any(err["type"] == "json_invalid" for err in errors):
            return JSONResponse({"error": "malformed_json", "detail": errors}, status_code=400)
        return JSONResponse({"error": "validation_error", "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        names = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 400: "bad_request"}
        return JSONResponse(
            {"error": names.get(exc.status_code, "http_error"), "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError):
        # Services check uniqueness first; this catches the race between two writers.
        return JSONResponse({"error": "conflict", "detail": "the change conflicts with existing data"}, status_code=409)


def internal_error_body(request_id: str) -> bytes:
    """What a client gets for an error of ours (the log has the rest)."""

    return orjson.dumps({
        "error": "internal_error",
        "detail": f"an unexpected error; it was logged with request id {request_id}",
    })


NUL_IN_PATH = orjson.dumps({"error": "not_found", "detail": "no such resource: the path holds a NUL character"})


async def _send_json(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- request ids, metrics, access log (pure ASGI: no per-request task hop) -------


class RequestContextMiddleware:
    """Request and correlation ids, metrics and the access log of every request.

    It also closes the request's read sessions once the response is out (see
    shared.deps), so FastAPI need not run them as generator dependencies. And it makes
    the app's settings current for the request (shared.settings.current_settings).
    """

    def __init__(self, app, metrics_getter, light_reads_getter=lambda: None, settings: SuiteSettings | None = None):
        self.app = app
        self.settings = settings
        self.metrics_getter = metrics_getter
        self.light_reads_getter = light_reads_getter
        self.access = logging.getLogger("valuechain.access")
        self._metric_children: dict[tuple, tuple] = {}  # labels() costs a lock and a dict build per call

    def _observe(self, metrics: Metrics, method: str, path: str, status: int, elapsed: float) -> None:
        key = (metrics, method, path, status)
        children = self._metric_children.get(key)
        if children is None:
            children = self._metric_children[key] = (
                metrics.requests.labels(metrics.service, method, path, str(status)),
                metrics.latency.labels(metrics.service, method, path),
            )
        children[0].inc()
        children[1].observe(elapsed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = cid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode()
            elif name == b"x-correlation-id":
                cid = value.decode()
        rid = rid or context.new_id()
        cid = cid or rid
        t1 = context.request_id.set(rid)
        t2 = context.correlation_id.set(cid)
        t3 = set_current(self.settings) if self.settings is not None else None
        scope[SESSIONS_TO_CLOSE] = sessions = []
        status = 500
        responded = False
        started = time.perf_counter()
        id_headers = [(b"x-request-id", rid.encode()), (b"x-correlation-id", cid.encode())]

        async def send_with_ids(message):
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), *id_headers]
            await send(message)

        try:
            if "\x00" in scope["path"]:  # no id holds one, and PostgreSQL cannot compare text with one
                return await _send_json(send_with_ids, 404, NUL_IN_PATH)
            light_reads = self.light_reads_getter() if scope["method"] == "GET" else None
            selected = light_reads.select(scope) if light_reads is not None else None
            served = False
            if selected is not None:
                handler, scope["route"], scope["path_params"] = selected  # as FastAPI's router sets them
                served = await handler(scope, receive, send_with_ids)
            if not served:
                await self.app(scope, receive, send_with_ids)
        except Exception:
            # The catch-all: a bug is logged once, with its request id, and the client
            # gets the suite's JSON error body rather than Starlette's plain text.
            log.exception("unhandled error", extra={"fields": {"path": scope["path"], "method": scope["method"]}})
            if responded:
                raise  # the answer is half sent: only dropping the connection is left
            await _send_json(send_with_ids, 500, internal_error_body(rid))
        finally:
            for session in sessions:
                await session.close()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics = self.metrics_getter()
            if metrics is not None and path != "/metrics":
                self._observe(metrics, scope["method"], path, status, elapsed)
            if path not in ("/healthz", "/readyz", "/metrics") and self.access.isEnabledFor(logging.INFO):
                # What Logger.info does, minus finding the caller's file and line by
                # walking the stack (no log line shows them): ~10 µs a request.
                extra = {"method": scope["method"], "path": scope["path"], "status": status,
                         "duration_ms": round(elapsed * 1000, 2)}
                self.access.handle(self.access.makeRecord(self.access.name, logging.INFO, "(unknown file)", 0,
                                                          "request", (), None, extra=extra))
            context.request_id.reset(t1)
            context.correlation_id.reset(t2)
            if t3 is not None:
                reset_current(t3)


# --- operator endpoints ---------------------------------------------------------


class DeadLetterOut(BaseModel):
    id: int
    consumer: str
    event_id: str | None
    subject: str | None
    error: str
    deliveries: int
    failed_at: datetime
    body: str


class DeadLetterPage(Page[DeadLetterOut]):
    pass


DeadLetterPaging = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER))]  # by row id


def ops_router(messaging: MessagingTables) -> APIRouter:
    router = APIRouter(tags=["operations"])
    table = messaging.dead_letters

    @router.get("/v1/ops/dead-letters", response_model=DeadLetterPage)
    async def list_dead_letters(session: ReadSession, page: DeadLetterPaging):
        """Events this service's consumers gave up on, newest first."""
        query = select(table).order_by(table.c.id.desc()).limit(page.fetch)
        if page.after_value is not None:
            query = query.where(table.c.id < page.after_value)
        rows = (await session.execute(query)).mappings().all()
        return page.of(rows, lambda row: (row["id"],), lambda row: dict(row, body=row["body"].decode("utf-8", "replace")))

    return router


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request):
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            async with runtime.db.reader() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        checks["nats"] = "ok" if runtime.bus.is_connected else "disconnected"
        for runner in runtime.consumers:
            checks[f"consumer:{runner.name}"] = "stalled" if runner.stalled else "ok"
        checks["outbox_relay"] = "ok" if runtime.relay.last_error is None else f"retrying: {runtime.relay.last_error}"
        ready = all(value == "ok" for key, value in checks.items() if key != "outbox_relay")
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    @router.get("/metrics")
    async def metrics(request: Request):
        runtime: Runtime = request.app.state.runtime
        try:
            runtime.metrics.outbox_pending.labels(runtime.settings.service).set(await runtime.relay.pending_count())
        except Exception:  # noqa: BLE001 - metrics must not fail on a busy database
            pass
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


# --- the app -----------------------------------------------------------------------


async def start_runtime(definition: ServiceDefinition, settings: ServiceSettings) -> Runtime:
    metrics = Metrics(definition.name)
    db = Database.connect(settings.database_url, service=definition.name)
    bus = Bus(settings.nats_url, name=f"valuechain-{definition.name}", stream=settings.stream)
    relay = OutboxRelay(
        db, definition.messaging, bus, metrics, batch=settings.outbox_batch, poll_s=settings.outbox_poll_s
    )
    db.info.update({"messaging": definition.messaging, "notify": relay.notify})
    consumers = [
        ConsumerRunner(spec, settings=settings, db=db, bus=bus, metrics=metrics) for spec in definition.consumers
    ]
    runtime = Runtime(settings, db, bus, relay, consumers, metrics)
    runtime.tasks.append(asyncio.create_task(bus.connect(), name="nats-connect"))
    runtime.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    for runner in consumers:
        runner.start()
    bus.on_reconnect(_notify_async(relay))
    for hook in definition.on_start:
        await hook(runtime)
    return runtime


def _notify_async(relay: OutboxRelay):
    async def callback() -> None:
        relay.notify()  # catch up on whatever piled up while NATS was away

    return callback


STOP_STEP_TIMEOUT_S = 10.0


async def _bounded(step: str, awaitable) -> None:
    """Stopping must end: a step that does not finish in time is logged, with the stacks
    of the tasks still running, and left behind."""

    try:
        await asyncio.wait_for(awaitable, timeout=STOP_STEP_TIMEOUT_S)
    except asyncio.TimeoutError:
        pending = [task for task in asyncio.all_tasks() if not task.done() and task is not asyncio.current_task()]
        stacks = {task.get_name(): [f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack(limit=8)]
                  for task in pending}
        log.error("stopping timed out", extra={"step": step, "tasks": stacks})


async def stop_runtime(runtime: Runtime) -> None:
    for runner in runtime.consumers:
        await _bounded(f"consumer {runner.name}", runner.stop())
    for task in runtime.tasks:
        task.cancel()
    await _bounded("background tasks", asyncio.gather(*runtime.tasks, return_exceptions=True))
    await _bounded("nats", runtime.bus.close())
    await _bounded("database", runtime.db.dispose())


def create_service_app(definition: ServiceDefinition, settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or service_settings(definition.name)
    configure_logging(definition.name, settings.log_level)
    # aiosqlite runs every statement on a worker thread; with CPython's default 5 ms
    # switch interval a busy event loop can hold the GIL that long before the
    # worker (and then the loop) get it back, several times per transaction.
    sys.setswitchinterval(settings.gil_switch_interval_s)
    gc.set_threshold(settings.gc_gen0_threshold, *gc.get_threshold()[1:])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Started in a context where the settings are current: the relay, the consumers
        # and whatever the start hooks launch inherit it (requests get it from the middleware).
        started = contextvars.copy_context()
        started.run(set_current, settings)
        app.state.runtime = await asyncio.create_task(start_runtime(definition, settings), context=started)
        app.state.light_reads = fast_reads.install(app)  # at start-up, when every route is there
        # Modules, schemas, metadata and the app live as long as the process: keep
        # the collector from walking them again and again (unfrozen at shutdown, so
        # processes that start many services, like the tests, leak nothing).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
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
    )
    app.include_router(health_router())
    app.include_router(ops_router(definition.messaging))
    for router in definition.routers:
        app.include_router(router)
    document_api(app)
    return app
