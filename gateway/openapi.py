"""One OpenAPI document for the whole suite, as the gateway exposes it.

The gateway fetches each service's `/openapi.json` (on the first request for
the gateway's `/openapi.json`), keeps what it got for `openapi_cache_s`, and
retries a service whose fetch failed after `openapi_retry_s`. The merged
document holds:

* the gateway's own operations (health, readiness, the 360 view);
* every service operation that the route table routes to that service, under
  the path the gateway exposes (so `/v1/ops/dead-letters` of identify appears
  as `/v1/ops/identify/dead-letters`), tagged with the service name;
* for a service that could not be fetched, a stub operation per routed
  method and path, so clients still see the route exists; the service is
  listed in `info.x-unavailable-services`;
* the bearer security scheme, required on every `/v1` operation but the public
  ones, the scope each needs (`x-scope`), the gateway's own error answers (401,
  403, 413, 502, 504), and every operation's
  error answers as shared/http/openapi_contract.py writes them (also for the
  gateway's own operations and the stubs).

Component schemas are merged by name; when two services define the same name
differently, the later one (in SERVICES order) is renamed `<service>__<Name>`
and its `$ref`s rewritten.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

import orjson

from gateway.access.roles import ANY_CALLER
from gateway.routes import Route, RouteTable
from gateway.settings import SERVICES
from gateway.upstream import UpstreamError, Upstreams
from shared.http.openapi_contract import ERROR, REF, document_errors

log = logging.getLogger("gateway.openapi")

ERROR_CONTENT = {"application/json": {"schema": {"$ref": REF + ERROR}}}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SECURITY_SCHEME = "bearer"

_GATEWAY_RESPONSES = {
    "401": "Missing or invalid API key (`unauthorized`)",
    "429": "Too many requests for this key (`rate_limited`): retry after `Retry-After` seconds",
    "502": "The service behind this route is unavailable (`bad_gateway`)",
    "504": "The service behind this route timed out (`gateway_timeout`)",
}
_TOO_LARGE = "The request body is over the gateway's limit (`payload_too_large`)"


class _Entry:
    __slots__ = ("doc", "error", "fetched_at", "ok")

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.fetched_at = 0.0
        self.ok = False
        self.error = "not fetched yet"


class OpenAPIMerger:
    def __init__(
        self,
        table: RouteTable,
        *,
        cache_s: float = 300.0,
        retry_s: float = 5.0,
        timeout: float = 5.0,
        services: tuple[str, ...] = SERVICES,
    ):
        self.table = table
        self.cache_s = cache_s
        self.retry_s = retry_s
        self.timeout = timeout
        self.services = services
        self._entries = {service: _Entry() for service in services}
        self._lock = asyncio.Lock()
        self._merged: dict[str, Any] | None = None
        self._merged_key: tuple[object, ...] | None = None

    def _stale(self, entry: _Entry, now: float) -> bool:
        if entry.fetched_at == 0.0:
            return True
        age = now - entry.fetched_at
        return age > (self.cache_s if entry.ok else self.retry_s)

    async def document(self, upstreams: Upstreams, own: dict[str, Any]) -> dict[str, Any]:
        """The merged document; `own` is the gateway's own FastAPI-generated one."""

        now = time.monotonic()
        stale = [service for service, entry in self._entries.items() if self._stale(entry, now)]
        if stale:
            async with self._lock:
                now = time.monotonic()
                stale = [service for service, entry in self._entries.items() if self._stale(entry, now)]
                if stale:
                    await asyncio.gather(*(self._fetch(upstreams, service) for service in stale))
        key = tuple((service, id(entry.doc), entry.ok) for service, entry in self._entries.items()) + (id(own),)
        if self._merged is None or self._merged_key != key:
            self._merged = self.merge(own, {s: e.doc for s, e in self._entries.items() if e.ok and e.doc is not None})
            self._merged_key = key
        return self._merged

    async def _fetch(self, upstreams: Upstreams, service: str) -> None:
        entry = self._entries[service]
        try:
            response = await upstreams[service].request(
                "GET", b"/openapi.json", b"accept: application/json\r\n", timeout=self.timeout
            )
            if response.status != 200:
                raise ValueError(f"/openapi.json answered {response.status}")
            doc = orjson.loads(response.body)
            if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
                raise ValueError("not an OpenAPI document")
        except (UpstreamError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            entry.fetched_at = time.monotonic()
            if entry.ok and entry.doc is not None:
                # Keep serving the last good copy; try again after retry_s.
                entry.fetched_at = time.monotonic() - self.cache_s + self.retry_s
                log.warning("openapi refresh failed", extra={"fields": {"service": service, "error": str(exc)}})
                return
            entry.ok = False
            entry.error = str(exc)
            log.warning("openapi fetch failed", extra={"fields": {"service": service, "error": str(exc)}})
            return
        entry.doc = doc
        entry.ok = True
        entry.error = ""
        entry.fetched_at = time.monotonic()

    # -- merging (pure) -------------------------------------------------------

    def merge(self, own: dict[str, Any], service_docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        doc = copy.deepcopy(own)
        paths: dict[str, dict[str, Any]] = doc.setdefault("paths", {})
        components: dict[str, dict[str, Any]] = doc.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`vc_...`, POST /v1/api-keys), a JWT from the company's identity "
            "provider when configured, or the bootstrap admin key (VALUECHAIN_ADMIN_API_KEY or "
            "var/admin-api-key). Each operation's `x-scope` is the scope it needs (docs/security.md).",
        }

        # Reverse map for rewritten routes: (service, upstream path) -> gateway route.
        rewritten = {(route.service, route.upstream): route for route in self.table.routes if route.upstream}

        unavailable = []
        for service in self.services:
            service_doc = service_docs.get(service)
            if service_doc is None:
                unavailable.append(service)
                self._add_stubs(paths, service)
                continue
            service_doc = self._merge_components(components, service, service_doc)
            for path, item in service_doc.get("paths", {}).items():
                if not isinstance(item, dict):
                    continue
                for method in HTTP_METHODS:
                    operation = item.get(method)
                    if operation is None:
                        continue
                    gateway_path = self._exposed_path(service, method.upper(), path, rewritten)
                    if gateway_path is None:
                        continue
                    operation = dict(operation)
                    operation.setdefault("tags", [service])
                    if "operationId" in operation:
                        operation["operationId"] = f"{service}__{operation['operationId']}"
                    target = paths.setdefault(gateway_path, {})
                    for shared in ("parameters", "summary", "description"):
                        if shared in item and shared not in target:
                            target[shared] = item[shared]
                    target[method] = operation

        for path, item in paths.items():
            if not path.startswith("/v1/"):
                continue
            for method in HTTP_METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                route = self.table.match(method.upper(), path).route
                gateway_errors = dict(_GATEWAY_RESPONSES)
                if route is not None and route.public:
                    del gateway_errors["401"]
                else:
                    operation["security"] = [{SECURITY_SCHEME: []}]
                    scope = route.scopes.get(method.upper()) if route is not None else None
                    if scope is not None and scope != ANY_CALLER:
                        operation["x-scope"] = scope
                        gateway_errors["403"] = f"The caller lacks the scope `{scope}` (`insufficient_scope`)"
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    gateway_errors["413"] = _TOO_LARGE
                for code, description in gateway_errors.items():
                    responses.setdefault(code, {"description": description, "content": ERROR_CONTENT})
        # The services' own error answers, and the same for the gateway's own operations
        # and for stubs (shared/http/openapi_contract.py).
        document_errors(doc, only=lambda path: path.startswith("/v1/"))
        doc["paths"] = dict(sorted(paths.items()))
        info = doc.setdefault("info", {})
        info["x-unavailable-services"] = unavailable
        return doc

    def _exposed_path(
        self, service: str, method: str, path: str, rewritten: dict[tuple[str | None, str], Route]
    ) -> str | None:
        route = rewritten.get((service, path))
        if route is not None:
            return route.pattern if method in route.methods else None
        match = self.table.match(method, path)
        route = match.route
        if route is None or route.service != service or route.upstream is not None:
            return None
        return path

    def _add_stubs(self, paths: dict[str, Any], service: str) -> None:
        for route in self.table.by_service(service):
            if route.pattern.endswith(":path}"):
                continue
            item = paths.setdefault(route.pattern, {})
            params = [
                {"name": segment[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                for segment in route.pattern.split("/")
                if segment.startswith("{")
            ]
            for method in sorted(route.methods):
                item.setdefault(
                    method.lower(),
                    {
                        "tags": [service],
                        "summary": f"{method} {route.pattern} (proxied to {service})",
                        "description": f"The {service} service's API description could not be fetched; "
                        "the gateway still routes this operation.",
                        "operationId": f"{service}__{method.lower()}_{_slug(route.pattern)}",
                        "parameters": params,
                        "responses": {"default": {"description": f"The answer of {service}"}},
                    },
                )

    def _merge_components(
        self, components: dict[str, Any], service: str, service_doc: dict[str, Any]
    ) -> dict[str, Any]:
        # A component another service already named differently is renamed `<service>__<name>`,
        # and so, in turn, is one that only refers to it (two `Page[TemplateOut]`s are equal
        # until their items' refs differ): repeated until no new clash appears.
        original = service_doc
        renames: dict[str, str] = {}
        while True:
            theirs = service_doc.get("components") or {}
            clashes = dict(renames)
            for section, items in theirs.items():
                if section == "securitySchemes" or not isinstance(items, dict):
                    continue
                ours = components.setdefault(section, {})
                for name, value in items.items():
                    if name in ours and ours[name] != value:
                        clashes[f"#/components/{section}/{name}"] = f"#/components/{section}/{service}__{name}"
            if clashes == renames:
                break
            renames = clashes
            service_doc = _rewrite_refs(original, renames)
        theirs = service_doc.get("components") or {}
        for section, items in theirs.items():
            if section == "securitySchemes" or not isinstance(items, dict):
                continue
            ours = components.setdefault(section, {})
            for name, value in items.items():
                ref = f"#/components/{section}/{name}"
                if ref in renames:
                    name = renames[ref].rsplit("/", 1)[1]
                ours.setdefault(name, value)
        return service_doc


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(value, renames) for value in node]
    return node


def _slug(pattern: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in pattern.strip("/"))


def routed_operations(table: RouteTable) -> list[tuple[str, str, Route]]:
    """(METHOD, pattern, route) for every routed operation, for tests and docs."""

    return [(method, route.pattern, route) for route in table.routes for method in sorted(route.methods)]
