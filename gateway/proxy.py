"""The gateway's hot path: a pure-ASGI front in front of the FastAPI app.

Every HTTP request passes through `GatewayFront.__call__`, which

1. reads the request and correlation ids (minting them when absent), the
   Authorization header and the CORS headers in one pass over the headers;
2. answers CORS preflights (no key needed);
3. for `/v1/...`: checks the bearer key, looks the method and path up in the
   route table (`gateway/routes.py`), answers 401/404/405 itself, forwards
   proxied routes to their service over the keep-alive pools of
   `gateway/upstream.py`, and hands the gateway's own `/v1` routes (the 360
   view) to FastAPI;
4. hands every other path (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`,
   `/docs`) to FastAPI;
5. adds X-Request-ID, X-Correlation-ID and CORS headers to every answer, counts
   it in the metrics and writes one JSON log line;
6. once a /v1 write on a known route is answered, queues its audit entry
   (gateway/audit: an append here, the database write comes later, in batches).

Proxied requests never enter FastAPI's middleware stack or router: that is
where most of a FastAPI proxy's per-request cost goes (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
import re
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit.writer import SCOPE_ANSWER, WRITE_METHODS, AuditWriter
from gateway.auth import BearerAuth
from gateway.observability import ACCESS_LOGGER, AccessLog, GatewayMetrics
from gateway.principal import BOOTSTRAP_ADMIN_ID, SCOPE_PRINCIPAL, Principal
from gateway.routes import Route, RouteTable
from gateway.settings import GatewaySettings
from gateway.upstream import ServicePool, UpstreamError, Upstreams, UpstreamTimeout
from shared.http.errors import error_body, internal_error_body

# ASGI headers as the front adds them to an answer: (lower-case name, value) pairs.
Headers = list[tuple[bytes, bytes]]

# Scope keys through which the gateway's own handlers learn the request's ids.
SCOPE_REQUEST_ID = "valuechain.request_id"
SCOPE_CORRELATION_ID = "valuechain.correlation_id"
# Set when the front checked the key; the gateway's own /v1 handlers insist on it.
SCOPE_AUTHENTICATED = "valuechain.authenticated"

# Request headers not forwarded: hop-by-hop ones (RFC 9110 7.6.1), those the
# client and the gateway set for the gateway itself, and the ones we rewrite.
DROP_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
        b"authorization",
        b"x-request-id",
        b"x-correlation-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
# Response headers not passed back: hop-by-hop ones, the length (recomputed),
# the ones the gateway's server sets itself, the ids and CORS (the gateway's own).
DROP_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
        b"x-request-id",
        b"x-correlation-id",
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-expose-headers",
        b"access-control-max-age",
    }
)

_ID_RE = re.compile(rb"[!-~]{1,128}")  # printable ASCII, no spaces, bounded
_JSON = (b"content-type", b"application/json")
_CORS_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
_EXPOSE = (b"access-control-expose-headers", b"X-Request-ID, X-Correlation-ID")
_VARY_ORIGIN = (b"vary", b"Origin")
_WWW_AUTH = (b"www-authenticate", b'Bearer realm="valuechain"')
_BOOTSTRAP = Principal(BOOTSTRAP_ADMIN_ID, "bootstrap", "admin", frozenset())


def new_id() -> bytes:
    """A random (version 4) UUID in its usual text form, in a third of uuid4()'s time."""

    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex().encode("ascii")
    return b"%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class GatewayFront:
    """ASGI callable for HTTP requests; see the module docstring."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        auth: BearerAuth,
        table: RouteTable,
        metrics: GatewayMetrics,
        fallback: ASGIApp,
    ):
        self.settings = settings
        self.auth = auth
        self.table = table
        self.metrics = metrics
        self.fallback = fallback
        self.upstreams: Upstreams | None = None  # made by the app's lifespan
        self.audit: AuditWriter | None = None  # made by the app's lifespan
        self.request_timeout = settings.request_timeout_s
        self.max_body = settings.max_request_body_bytes
        self.cors_origins = frozenset(origin.encode("latin-1") for origin in settings.cors_origins)
        self.cors_any_origin = b"*" in self.cors_origins
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.access_log = AccessLog(settings.access_log_flush_s) if settings.access_log else None
        # The 502/504 bodies, made once per service on its first failure.
        self._bad_gateway: dict[str, bytes] = {}
        self._timeout: dict[str, bytes] = {}
        self._unauthorized = error_body("unauthorized", "missing or invalid API key (Authorization: Bearer <key>)")
        self._not_found = error_body("not_found", "no such route")

    # -- entry point --------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        method: str = scope["method"]
        request_id = correlation_id = authorization = origin = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"x-correlation-id":
                correlation_id = value
            elif name == b"authorization":
                authorization = value
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        if request_id is None or _ID_RE.fullmatch(request_id) is None:
            request_id = new_id()
        if correlation_id is None or _ID_RE.fullmatch(correlation_id) is None:
            correlation_id = request_id
        extra = [(b"x-request-id", request_id), (b"x-correlation-id", correlation_id)]

        route_name = "unmatched"
        service = None
        status = 500
        audited: Route | None = None  # a write on a known route: recorded once answered
        try:
            if origin is not None:
                allowed_origin = self.cors_any_origin or origin in self.cors_origins
                if preflight and method == "OPTIONS":
                    route_name = "cors-preflight"
                    status = await self._preflight(scope, send, origin, allowed_origin, extra)
                    return
                if allowed_origin:
                    extra.append((b"access-control-allow-origin", origin))
                    extra.append(_EXPOSE)
                extra.append(_VARY_ORIGIN)

            # The route table matches the raw (still percent-encoded) path, which is
            # what gets forwarded; whether the key is needed is decided on both
            # forms, so `/%761/...` cannot reach a /v1 handler without it.
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else scope["path"]
            if "?" in path:  # some servers leave the query in raw_path
                path = path.partition("?")[0]
                raw_path = path.encode("latin-1")
            if not path.startswith("/v1/") and not scope["path"].startswith("/v1"):
                route_name = path if path in _OWN_PATHS else "other"
                status = await self._to_fastapi(scope, receive, send, extra, request_id, correlation_id)
                return

            if not self.auth.check(authorization):
                extra.append(_WWW_AUTH)
                status = await self._send_json(send, 401, self._unauthorized, extra)
                return
            # Only the admin key gets here until helper B's key and JWT resolution replaces this.
            scope[SCOPE_PRINCIPAL] = _BOOTSTRAP

            match = self.table.match(method, path)
            route = match.route
            if route is None:
                if match.allowed:
                    extra.append((b"allow", ", ".join(sorted(match.allowed)).encode("ascii")))
                    body = error_body(
                        "method_not_allowed", f"{method} not allowed here; allowed: {', '.join(sorted(match.allowed))}"
                    )
                    status = await self._send_json(send, 405, body, extra)
                else:
                    status = await self._send_json(send, 404, self._not_found, extra)
                return
            route_name = route.name
            if method in WRITE_METHODS:
                audited = route
            if route.service is None:
                scope[SCOPE_AUTHENTICATED] = True
                status = await self._to_fastapi(scope, receive, send, extra, request_id, correlation_id)
                return
            service = route.service
            status = await self._proxy(scope, receive, send, route, raw_path, extra, request_id, correlation_id)
        except Exception as error:
            self.logger.exception(
                "unhandled error",
                extra={"fields": {"request_id": request_id.decode("latin-1"), "path": scope.get("path")}},
            )
            # The catch-all: the client gets the suite's JSON error body, never plain text.
            # Not wrapping `send` to learn whether the answer had started saves a closure
            # and a hop per message on every request: a server refuses a second start
            # (ASGI), and then the answer is (half) sent and only dropping the connection
            # is left.
            try:
                status = await self._send_json(send, 500, internal_error_body(request_id.decode("latin-1")), extra)
            except Exception:  # noqa: BLE001 - rendering the 500 failed: the original error goes up
                raise error from None
        finally:
            if audited is not None and self.audit is not None:
                self.audit.record(scope, audited, path, status, request_id, correlation_id)
            elapsed = time.perf_counter() - start
            self.metrics.observe(route_name, method, status, elapsed)
            access_log = self.access_log
            if access_log is not None and access_log.enabled():
                client = scope.get("client")
                access_log.write(
                    {
                        "method": method,
                        "path": scope["path"],
                        "route": route_name,
                        "service": service,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "request_id": request_id.decode("latin-1"),
                        "correlation_id": correlation_id.decode("latin-1"),
                        "client": client[0] if client else None,
                    }
                )

    # -- proxying -----------------------------------------------------------

    async def _proxy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        raw_path: bytes | None,
        extra: Headers,
        request_id: bytes,
        correlation_id: bytes,
    ) -> int:
        upstreams = self.upstreams
        if upstreams is None:
            body = error_body("unavailable", "gateway is not started")
            return await self._send_json(send, 503, body, extra)
        service = route.service
        assert service is not None, "__call__ proxies only a service's routes"
        method = scope["method"]

        has_body = False
        lines: list[bytes] = []
        forwarded_for = None
        forwarded_host = None
        hop_tokens = None
        idempotency_key = False
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                idempotency_key = True
            elif name in DROP_REQUEST_HEADERS:
                if name == b"content-length" or name == b"transfer-encoding":
                    has_body = True
                elif name == b"x-forwarded-for":
                    forwarded_for = value
                elif name == b"host":
                    forwarded_host = value
                elif name == b"connection":
                    hop_tokens = _connection_tokens(value)
                continue
            lines.append(name + b": " + value + b"\r\n")
        if hop_tokens:
            lines = [line for line in lines if line.partition(b":")[0] not in hop_tokens]
        client = scope.get("client")
        if client:
            ip = client[0].encode("latin-1")
            forwarded_for = forwarded_for + b", " + ip if forwarded_for else ip
        if forwarded_for:
            lines.append(b"x-forwarded-for: " + forwarded_for + b"\r\n")
        if forwarded_host:
            lines.append(b"x-forwarded-host: " + forwarded_host + b"\r\n")
        lines.append(b"x-forwarded-proto: " + scope.get("scheme", "http").encode("latin-1") + b"\r\n")
        lines.append(b"x-request-id: " + request_id + b"\r\nx-correlation-id: " + correlation_id + b"\r\n")

        body = b""
        if has_body:
            try:
                body = await self._read_body(receive)
            except _TooLarge:
                error = error_body("payload_too_large", f"request body over {self.max_body} bytes")
                return await self._send_json(send, 413, error, extra)
            except _Disconnected:
                return 499

        target = route.upstream_bytes or raw_path or quote(scope["path"]).encode("ascii")
        query = scope.get("query_string")
        if query:
            target = target + b"?" + query
        if route.stream:
            return await self._proxy_stream(send, upstreams.pools[service], method, target, b"".join(lines), extra)
        try:
            response = await upstreams.pools[service].request(
                method,
                target,
                b"".join(lines),
                body,
                timeout=self.request_timeout,
                retry_non_idempotent=idempotency_key,
            )
        except UpstreamError as exc:
            return await self._upstream_failed(send, service, exc, extra)

        headers = _response_headers(response.headers)
        payload = response.body
        if method in WRITE_METHODS:  # the audit log looks in it for the id of what was created
            scope[SCOPE_ANSWER] = (response.headers, payload)
        headers.append((b"content-length", str(len(payload)).encode("ascii")))
        headers.extend(extra)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return response.status

    async def _proxy_stream(
        self, send: Send, pool: ServicePool, method: str, target: bytes, headers: bytes, extra: Headers
    ) -> int:
        """Pass an export on chunk by chunk, with the flow control of the upstream
        client: the gateway holds a few chunks, never the whole answer. A service that
        fails after the head is sent can no longer change the status: the error is
        raised, and the server drops the connection, so the client sees a cut answer
        (no final chunk) and not a short one that looks complete."""

        try:
            stream = await pool.stream(method, target, headers, timeout=self.request_timeout)
        except UpstreamError as exc:
            return await self._upstream_failed(send, pool.service, exc, extra)
        try:
            response_headers = _response_headers(stream.headers)
            response_headers.extend(extra)
            await send({"type": "http.response.start", "status": stream.status, "headers": response_headers})
            try:
                async for chunk in stream.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except UpstreamError as exc:
                self.metrics.upstream_error(pool.service, exc.kind)
                raise
            await send({"type": "http.response.body", "body": b""})
        finally:
            stream.close()
        return stream.status

    async def _upstream_failed(self, send: Send, service: str, exc: UpstreamError, extra: Headers) -> int:
        self.metrics.upstream_error(service, exc.kind)
        if isinstance(exc, UpstreamTimeout):
            body = self._timeout.get(service)
            if body is None:
                body = self._timeout[service] = error_body("gateway_timeout", f"{service} timed out")
            return await self._send_json(send, 504, body, extra)
        body = self._bad_gateway.get(service)
        if body is None:
            body = self._bad_gateway[service] = error_body("bad_gateway", f"{service} unavailable")
        return await self._send_json(send, 502, body, extra)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise _TooLarge()
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- answers the front gives itself ------------------------------------

    async def _send_json(self, send: Send, status: int, body: bytes, extra: Headers) -> int:
        headers = [_JSON, (b"content-length", str(len(body)).encode("ascii"))]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _preflight(self, scope: Scope, send: Send, origin: bytes, allowed: bool, extra: Headers) -> int:
        if not allowed:
            body = error_body("cors_origin_not_allowed", f"origin {origin.decode('latin-1')} is not allowed")
            return await self._send_json(send, 400, body, extra + [_VARY_ORIGIN])
        requested_headers = b""
        for name, value in scope["headers"]:
            if name == b"access-control-request-headers":
                requested_headers = value
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", _CORS_METHODS),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"content-length", b"0"),
        ]
        if requested_headers:
            headers.append((b"access-control-allow-headers", requested_headers))
        headers.extend(extra)
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204

    async def _to_fastapi(
        self, scope: Scope, receive: Receive, send: Send, extra: Headers, request_id: bytes, correlation_id: bytes
    ) -> int:
        scope[SCOPE_REQUEST_ID] = request_id.decode("latin-1")
        scope[SCOPE_CORRELATION_ID] = correlation_id.decode("latin-1")
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                names = {b"x-request-id", b"x-correlation-id"}
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in names]
                headers.extend(extra)
                message = {**message, "headers": headers}
                scope[SCOPE_ANSWER] = (headers, b"")  # a Location, for the audit log; handlers annotate the rest
            await send(message)

        await self.fallback(scope, receive, send_with_headers)
        return status


_OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"})


def _response_headers(headers: Headers) -> Headers:
    """A service's answer headers as the client gets them: without DROP_RESPONSE_HEADERS
    and without the hop-by-hop headers its `Connection` header names (RFC 9110 7.6.1),
    which are for the gateway alone. Our services send no `Connection` header on a
    kept-alive answer, so the filtering pass for it is almost never taken; looking
    for it costs one loop over a handful of headers."""

    kept = [item for item in headers if item[0] not in DROP_RESPONSE_HEADERS]
    hop: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            hop.update(_connection_tokens(value) or ())
    if hop:
        kept = [item for item in kept if item[0] not in hop]
    return kept


def _connection_tokens(value: bytes) -> frozenset[bytes] | None:
    tokens = {token.strip().lower() for token in value.split(b",")} - {b"close", b"keep-alive", b""}
    return frozenset(tokens) if tokens else None
