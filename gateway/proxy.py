"""The gateway's hot path: a pure-ASGI front in front of the FastAPI app.

Every HTTP request passes through `GatewayFront.__call__`, which

1. reads the request and correlation ids (minting them when absent), the
   Authorization header and the CORS headers in one pass over the headers;
2. answers CORS preflights (no key needed), allowing only the API's headers;
3. for `/v1/...`: looks the method and path up in the route table
   (`gateway/routes.py`), resolves the caller from the key or JWT
   (`gateway/access/resolver.py`; not for a public route), checks the scope the
   route needs, takes one request from the caller's rate limit
   (`gateway/ratelimit.py`; 429 when none is left), answers 401/403/404/405/429
   itself, forwards proxied routes to their service over the keep-alive pools of
   `gateway/upstream.py` with the caller in `x-valuechain-*` headers (request
   bodies up to 1 MiB read whole, import uploads up to 200 MiB streamed), and
   hands the gateway's own `/v1` routes (the 360 view, API keys, /v1/me) to FastAPI;
4. hands every other path (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`,
   `/docs`) to FastAPI; `/metrics` needs the `ops` scope, the others no key;
5. adds X-Request-ID, X-Correlation-ID, CORS, the security headers and (on
   authenticated `/v1` answers) the RateLimit fields to every answer, counts it
   in the metrics and writes one JSON log line;
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
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.resolver import AccessResolver
from gateway.access.roles import ANY_CALLER
from gateway.audit.writer import SCOPE_ANSWER, WRITE_METHODS, AuditWriter
from gateway.observability import ACCESS_LOGGER, AccessLog, GatewayMetrics
from gateway.principal import SCOPE_PRINCIPAL, Principal
from gateway.ratelimit import RateLimiter
from gateway.routes import Route, RouteTable
from gateway.settings import GatewaySettings
from gateway.upstream import (
    NoHealthyReplica,
    ReplicaSet,
    ServicePool,
    UpstreamError,
    UpstreamResponse,
    Upstreams,
    UpstreamTimeout,
)
from shared.http.errors import error_body, internal_error_body

# ASGI headers as the front adds them to an answer: (lower-case name, value) pairs.
Headers = list[tuple[bytes, bytes]]

# Scope keys through which the gateway's own handlers learn the request's ids.
SCOPE_REQUEST_ID = "valuechain.request_id"
SCOPE_CORRELATION_ID = "valuechain.correlation_id"

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
        # The gateway's own (SECURITY_HEADERS, the rate limit): a service's would be a second copy.
        b"x-content-type-options",
        b"x-frame-options",
        b"referrer-policy",
        b"cache-control",
        b"ratelimit",
        b"ratelimit-policy",
    }
)

_ID_RE = re.compile(rb"[!-~]{1,128}")  # printable ASCII, no spaces, bounded
_JSON = (b"content-type", b"application/json")
_CORS_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
# The request headers the API reads, all a preflight allows (never the ones asked
# for: a header outside this list gets the list, and the browser stops there).
# If-Match is read by no route today; it is allowed for the optimistic updates to come.
CORS_ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, If-Match, X-Request-ID, X-Correlation-ID"
_EXPOSE = (
    b"access-control-expose-headers",
    b"X-Request-ID, X-Correlation-ID, RateLimit, RateLimit-Policy, Retry-After",
)
_PREFLIGHT_HEADERS = (
    (b"access-control-allow-methods", _CORS_METHODS),
    (b"access-control-allow-headers", CORS_ALLOW_HEADERS),
    (b"access-control-max-age", b"600"),
    (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    (b"content-length", b"0"),
)
# On every answer: no MIME sniffing of JSON into HTML, no framing, no Referer leaking
# ids to other sites. /v1 answers hold personal data: never stored by a cache.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE = (b"cache-control", b"no-store")
# What the front sets on the gateway's own (FastAPI) answers, replacing the app's.
_FRONT_HEADER_NAMES = frozenset(
    {b"x-request-id", b"x-correlation-id", b"cache-control", *(name for name, _ in SECURITY_HEADERS)}
)
# Uploads: bodies of these types to these routes may be up to max_upload_body_bytes,
# and are streamed to the service instead of read whole first.
UPLOAD_ROUTES = frozenset({("POST", "/v1/imports")})
UPLOAD_TYPES = (b"multipart/form-data", b"text/csv")
_VARY_ORIGIN = (b"vary", b"Origin")
_WWW_AUTH = (b"www-authenticate", b'Bearer realm="valuechain"')
# The caller, as services learn it (docs/security.md); any a client sends is dropped.
_CALLER_HEADER_PREFIX = b"x-valuechain-"
# Paths outside /v1 that need a scope (the rest of them are open).
_SCOPED_PATHS = {"/metrics": "ops"}
# Safe in a header value and in an id; anything else (a JWT subject is the IdP's) is percent-encoded.
_HEADER_SAFE = "!#$&'()*+,/:;=?@[]~-._"


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
        access: AccessResolver,
        table: RouteTable,
        metrics: GatewayMetrics,
        fallback: ASGIApp,
    ):
        self.settings = settings
        self.access = access
        self.table = table
        self.metrics = metrics
        self.fallback = fallback
        self.upstreams: Upstreams | None = None  # made by the app's lifespan
        self.audit: AuditWriter | None = None  # made by the app's lifespan
        # What the gateway itself does once a service said yes to a write, before passing the
        # yes on, by (method, route pattern), given the service's answer: an erasure deletes the customer's pending
        # export documents (gateway/exports.py). Rare routes; none on the hot path.
        self.after_success: dict[tuple[str, str], Callable[[bytes], Awaitable[None]]] = {}
        self.request_timeout = settings.request_timeout_s
        self.max_body = settings.max_request_body_bytes
        self.max_upload = settings.max_upload_body_bytes
        self.limiter = RateLimiter(
            settings.rate_limits, window_s=settings.rate_limit_window_s, replicas=settings.gateway_replicas()
        )
        self.cors_origins = frozenset(origin.encode("latin-1") for origin in settings.cors_origins)
        self.cors_any_origin = b"*" in self.cors_origins
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.access_log = AccessLog(settings.access_log_flush_s) if settings.access_log else None
        # The 502/504 bodies, made once per service on its first failure.
        self._bad_gateway: dict[str, bytes] = {}
        self._timeout: dict[str, bytes] = {}
        self._no_replica: dict[str, bytes] = {}
        self._unauthorized = error_body("unauthorized", "missing or invalid API key (Authorization: Bearer <key>)")
        self._not_found = error_body("not_found", "no such route")
        self._rate_limited = error_body(
            "rate_limited", "too many requests for this key: retry after Retry-After seconds"
        )
        self._forbidden: dict[str, tuple[bytes, tuple[bytes, bytes]]] = {}
        self._caller_lines: dict[Principal, bytes] = {}

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
        extra = [(b"x-request-id", request_id), (b"x-correlation-id", correlation_id), *SECURITY_HEADERS]

        route_name = "unmatched"
        service = None
        status = 500
        audited: Route | None = None  # a write on a known route: recorded once answered
        try:
            if origin is not None:
                allowed_origin = self.cors_any_origin or origin in self.cors_origins
                if preflight and method == "OPTIONS":
                    route_name = "cors-preflight"
                    status = await self._preflight(send, origin, allowed_origin, extra)
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
                needed = _SCOPED_PATHS.get(scope["path"])
                if needed is not None:
                    status = await self._check_access(scope, send, authorization, needed, extra)
                    if status:
                        return
                status = await self._to_fastapi(scope, receive, send, extra, request_id, correlation_id)
                return

            extra.append(_NO_STORE)
            match = self.table.match(method, path)
            route = match.route
            # A public route needs no key; anywhere else, no key means 401, even
            # before a 404 or 405 (the table is not shown to callers without one).
            if route is None or not route.public:
                needed = route.scopes[method] if route is not None else ANY_CALLER
                status = await self._check_access(scope, send, authorization, needed, extra)
                if status:
                    if status == 403 and route is not None:  # a 401 names no route: "unmatched"
                        route_name = route.name
                        if method in WRITE_METHODS:  # a refused write is on the record too: who tried what
                            audited = route
                    return
                # The caller's rate limit, once it is known: every authenticated /v1
                # answer carries RateLimit and RateLimit-Policy (a public route has no caller).
                principal: Principal = scope[SCOPE_PRINCIPAL]
                decision = self.limiter.take(principal.id, principal.role)
                extra.append(decision.policy_header)
                extra.append(decision.header)
                if not decision.allowed:
                    route_name = "rate-limited"
                    extra.append(decision.retry_after)
                    status = await self._send_json(send, 429, self._rate_limited, extra)
                    return
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

    async def _check_access(
        self, scope: Scope, send: Send, authorization: bytes | None, needed: str, extra: Headers
    ) -> int:
        """Resolve the caller into the scope and check it holds `needed`: 0 when it does,
        else the status of the 401 or 403 sent."""

        principal = await self.access.authenticate(authorization)
        if principal is None:
            extra.append(_WWW_AUTH)
            return await self._send_json(send, 401, self._unauthorized, extra)
        scope[SCOPE_PRINCIPAL] = principal
        if needed == ANY_CALLER or needed in principal.scopes:
            return 0
        forbidden = self._forbidden.get(needed)
        if forbidden is None:
            # RFC 6750 3.1: the scope needed, in the challenge as in the body.
            challenge = f'Bearer realm="valuechain", error="insufficient_scope", scope="{needed}"'
            forbidden = self._forbidden[needed] = (
                error_body("insufficient_scope", f"this needs the scope {needed}"),
                (b"www-authenticate", challenge.encode("ascii")),
            )
        extra.append(forbidden[1])
        return await self._send_json(send, 403, forbidden[0], extra)

    def _caller(self, principal: Principal) -> bytes:
        """The `x-valuechain-*` request header lines naming the caller to a service."""

        lines = self._caller_lines.get(principal)
        if lines is None:
            fields = [(b"actor", principal.id), (b"role", principal.role)]
            if principal.partner_id is not None:
                fields.append((b"partner", principal.partner_id))
            if principal.person_id is not None:
                fields.append((b"person", principal.person_id))
            if principal.allows("pii:read"):
                fields.append((b"pii", "1"))  # personal fields in events it receives (webhooks, the feed)
            if principal.event_types is not None:  # only for a limited key: nothing added on the hot path otherwise
                fields.append((b"event-types", " ".join(principal.event_types)))
            lines = b"".join(
                _CALLER_HEADER_PREFIX + name + b": " + quote(value, safe=_HEADER_SAFE).encode("ascii") + b"\r\n"
                for name, value in fields
            )
            if len(self._caller_lines) >= 10_000:
                self._caller_lines.clear()
            self._caller_lines[principal] = lines
        return lines

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
        length = content_type = None
        lines: list[bytes] = []
        forwarded_for = None
        forwarded_host = None
        hop_tokens = None
        idempotency_key = False
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                idempotency_key = True
            elif name == b"content-type":
                content_type = value
            elif name.startswith(_CALLER_HEADER_PREFIX):
                continue  # the gateway's to say (below), never the client's
            elif name in DROP_REQUEST_HEADERS:
                if name == b"content-length":
                    has_body = True
                    length = value
                elif name == b"transfer-encoding":
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
        principal = scope.get(SCOPE_PRINCIPAL)
        if principal is not None:
            lines.append(self._caller(principal))

        target = route.upstream_bytes or raw_path or quote(scope["path"]).encode("ascii")
        query = scope.get("query_string")
        if query:
            target = target + b"?" + query

        body = b""
        if has_body:
            upload = (
                content_type is not None
                and (method, route.pattern) in UPLOAD_ROUTES
                and content_type.lower().startswith(UPLOAD_TYPES)
            )
            limit = self.max_upload if upload else (route.max_body or self.max_body)
            declared = int(length) if length is not None else None  # uvicorn checked it is a number
            try:
                if declared is not None and declared > limit:
                    raise _TooLarge()
                if upload:
                    response = await upstreams.pools[service].upload(
                        method,
                        target,
                        b"".join(lines),
                        self._body_chunks(receive, limit),
                        length=declared,
                        timeout=self.request_timeout,
                    )
                    return await self._send_response(scope, send, response, extra)
                body = await self._read_body(receive, limit)
            except _TooLarge:
                kind = "an upload" if upload else "a request body"
                error = error_body("payload_too_large", f"{kind} here may have at most {limit} bytes")
                return await self._send_json(send, 413, error, extra)
            except _Disconnected:
                return 499
            except UpstreamError as exc:
                return await self._upstream_failed(send, service, exc, extra)

        if route.stream:
            return await self._proxy_stream(send, upstreams.pools[service], method, target, b"".join(lines), extra)
        try:
            response = await upstreams.pools[service].request(
                method,
                target,
                b"".join(lines),
                body,
                timeout=route.timeout_s or self.request_timeout,
                retry_non_idempotent=idempotency_key,
            )
        except UpstreamError as exc:
            return await self._upstream_failed(send, service, exc, extra)
        if self.after_success and 200 <= response.status < 300:
            hook = self.after_success.get((method, route.pattern))
            if hook is not None:  # before answering: once the client hears yes, the gateway's share is done
                await hook(response.body)
        return await self._send_response(scope, send, response, extra)

    async def _send_response(self, scope: Scope, send: Send, response: UpstreamResponse, extra: Headers) -> int:
        headers = _response_headers(response.headers)
        payload = response.body
        if scope["method"] in WRITE_METHODS:  # the audit log looks in it for the id of what was created
            scope[SCOPE_ANSWER] = (response.headers, payload)
        headers.append((b"content-length", str(len(payload)).encode("ascii")))
        headers.extend(extra)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return response.status

    async def _proxy_stream(
        self, send: Send, pool: ServicePool | ReplicaSet, method: str, target: bytes, headers: bytes, extra: Headers
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
        if isinstance(exc, NoHealthyReplica):
            # Every replica is out of rotation (gateway/health.py puts them back as they recover).
            body = self._no_replica.get(service)
            if body is None:
                body = self._no_replica[service] = error_body(
                    "service_unavailable", f"{service} unavailable: no healthy replica"
                )
            return await self._send_json(send, 503, body, extra)
        body = self._bad_gateway.get(service)
        if body is None:
            body = self._bad_gateway[service] = error_body("bad_gateway", f"{service} unavailable")
        return await self._send_json(send, 502, body, extra)

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        chunks = [chunk async for chunk in self._body_chunks(receive, limit)]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    async def _body_chunks(receive: Receive, limit: int) -> AsyncIterator[bytes]:
        """The request body as the server hands it on; _TooLarge past `limit` bytes,
        _Disconnected when the client goes away first."""

        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _TooLarge()
                yield chunk
            if not message.get("more_body", False):
                return

    # -- answers the front gives itself ------------------------------------

    async def _send_json(self, send: Send, status: int, body: bytes, extra: Headers) -> int:
        headers = [_JSON, (b"content-length", str(len(body)).encode("ascii"))]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _preflight(self, send: Send, origin: bytes, allowed: bool, extra: Headers) -> int:
        if not allowed:
            body = error_body("cors_origin_not_allowed", f"origin {origin.decode('latin-1')} is not allowed")
            return await self._send_json(send, 400, body, extra + [_VARY_ORIGIN])
        headers = [(b"access-control-allow-origin", origin), *_PREFLIGHT_HEADERS]
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
                headers = [h for h in message.get("headers", ()) if h[0].lower() not in _FRONT_HEADER_NAMES]
                headers.extend(extra)
                message = {**message, "headers": headers}
                scope[SCOPE_ANSWER] = (headers, b"")  # a Location, for the audit log; handlers annotate the rest
            await send(message)

        await self.fallback(scope, receive, send_with_headers)
        return status


_OWN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/swagger-init.js", "/docs/oauth2-redirect"}
)


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
