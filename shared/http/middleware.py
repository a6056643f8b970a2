"""Request ids, metrics and the access log of every request (pure ASGI: no per-request task hop)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.deps import SESSIONS_TO_CLOSE
from shared.http.errors import error_body, internal_error_body
from shared.http.fast_writes import HANDED_OVER_RECEIVE
from shared.internal_auth import INTERNAL_HEADER, OPEN_PATHS, UNAUTHORIZED, InternalSecret
from shared.observability import context
from shared.observability.metrics import Metrics
from shared.settings import SuiteSettings, reset_current, set_current

log = logging.getLogger("valuechain.app")

NUL_IN_PATH = error_body("not_found", "no such resource: the path holds a NUL character")


async def send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Request and correlation ids, metrics and the access log of every request.

    It also closes the request's read sessions once the response is out (see
    shared.http.deps), so FastAPI need not run them as generator dependencies. And it makes
    the app's settings current for the request (shared.settings.current_settings).

    With `internal` (every service app), it answers 401 to a request that does not carry
    the gateway's internal secret (shared/internal_auth.py) before anything else runs;
    only `/healthz` and `/readyz` are open.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics_getter: Callable[[], Metrics | None],
        light_reads_getter: Callable[[], Any] = lambda: None,
        settings: SuiteSettings | None = None,
        internal: InternalSecret | None = None,
    ):
        self.app = app
        self.internal = internal
        self.settings = settings
        self.metrics_getter = metrics_getter
        self.light_reads_getter = light_reads_getter
        self.access = logging.getLogger("valuechain.access")
        self._metric_children: dict[
            tuple[Any, ...], tuple[Any, Any]
        ] = {}  # labels() costs a lock and a dict build per call

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = cid = None
        internal = self.internal
        admitted = internal is None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode()
            elif name == b"x-correlation-id":
                cid = value.decode()
            elif name == INTERNAL_HEADER and internal is not None and internal.matches(value):
                admitted = True  # any matching one: a client's guess forwarded beside it is harmless
        rid = rid or context.new_id()
        cid = cid or rid
        t1 = context.request_id.set(rid)
        t2 = context.correlation_id.set(cid)
        t3 = set_current(self.settings) if self.settings is not None else None
        sessions: list[AsyncSession] = []
        scope[SESSIONS_TO_CLOSE] = sessions
        status = 500
        responded = False
        started = time.perf_counter()
        id_headers = [(b"x-request-id", rid.encode()), (b"x-correlation-id", cid.encode())]

        async def send_with_ids(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), *id_headers]
            await send(message)

        try:
            if not admitted and scope["path"] not in OPEN_PATHS:
                return await send_json(send_with_ids, 401, UNAUTHORIZED)
            if "\x00" in scope["path"]:  # no id holds one, and PostgreSQL cannot compare text with one
                return await send_json(send_with_ids, 404, NUL_IN_PATH)
            light_routes = self.light_reads_getter()
            selected = light_routes.select(scope) if light_routes is not None else None
            served = False
            if selected is not None:
                handler, scope["route"], scope["path_params"] = selected  # as FastAPI's router sets them
                served = await handler(scope, receive, send_with_ids)
            if not served:
                # A light write that read the body hands it over with the receive it leaves.
                await self.app(scope, scope.pop(HANDED_OVER_RECEIVE, receive), send_with_ids)
        except Exception:
            # The catch-all: a bug is logged once, with its request id, and the client
            # gets the suite's JSON error body rather than Starlette's plain text.
            log.exception("unhandled error", extra={"fields": {"path": scope["path"], "method": scope["method"]}})
            if responded:
                raise  # the answer is half sent: only dropping the connection is left
            await send_json(send_with_ids, 500, internal_error_body(rid))
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
                extra = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                }
                self.access.handle(
                    self.access.makeRecord(
                        self.access.name, logging.INFO, "(unknown file)", 0, "request", (), None, extra=extra
                    )
                )
            context.request_id.reset(t1)
            context.correlation_id.reset(t2)
            if t3 is not None:
                reset_current(t3)
