"""Unknown query parameters are an error, never ignored (issue 10, point 7).

FastAPI validates the query parameters a route declares and silently drops the
rest, so `GET /v1/customers?emial=ada@example.com` used to answer everyone. The
`UnknownQueryGuard` middleware refuses such a request with 422 before the endpoint
runs (a POST with a misspelt parameter changes nothing):

    {"error": "validation_error",
     "detail": [{"field": "query.colour", "message": "unknown query parameter", "type": "extra_forbidden"}]}

Rules:
- the names a route accepts are its dependant's query parameters, sub-dependencies
  included, by the name the client sends (the alias); a query model
  (`Annotated[Model, Query()]`) accepts its fields, or anything if it allows extras;
- a parameter that is not a list (`limit`, `cursor`) given twice is 422 as well
  (`type: "multiple_values"`): FastAPI would use one value and drop the other; list
  parameters (`top=0.2&top=0.5`) repeat freely;
- a value holding a NUL is 422 (`type: "value_error"`), as a NUL in a body's text is;
- routes that are not FastAPI endpoints (the `/docs` and `/openapi.json` pages)
  declare nothing, so any parameter is refused there too; only Swagger UI's OAuth2
  redirect page (read by its script, not by the server) and mounts (static files,
  where `?v=` cache busters are common) are left alone.

The route is found by FastAPI's own rule (first route whose path and method match,
in FastAPI's order), the same walk as shared/http/fast_reads.py. A request without a
query string costs one dict lookup; the light read path serves only routes without
query parameters and leaves any request with a query string to this guard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette import routing
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("valuechain.app")

try:  # private to FastAPI 0.16x: without them every alias is the field's alias
    from fastapi.dependencies.utils import _get_param_aliases, _get_param_model, get_cached_model_fields
except ImportError:  # pragma: no cover
    _get_param_aliases = _get_param_model = get_cached_model_fields = None  # type: ignore[assignment]

try:  # private to FastAPI 0.16x: routers included into the app
    from fastapi.routing import _IncludedRouter
except ImportError:  # pragma: no cover
    _IncludedRouter = None  # type: ignore[misc, assignment]

ANY = None  # a route that takes any parameter (a mount, a query model allowing extras)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The query parameters one route takes: names, and which of them may repeat."""

    names: frozenset[str]
    lists: frozenset[str]


NOTHING = Accepted(frozenset(), frozenset())

# (path regex or None: stop checking, methods, route, Accepted or ANY)
Entry = tuple[Any, set[str] | None, Any, Accepted | None]


def _aliases(field: ModelField) -> list[str]:
    if _get_param_aliases is None:  # pragma: no cover
        return [field.alias]
    return [request_key for _, request_key in _get_param_aliases(field)]


def accepted(dependant: Dependant) -> Accepted | None:
    """What a FastAPI dependant accepts in the query string; None for anything."""

    names: set[str] = set()
    lists: set[str] = set()
    stack, seen = [dependant], set[int]()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(current.dependencies)
        for field in current.query_params:
            model = _get_param_model(field) if _get_param_model is not None else None
            if model is not None:
                if model.model_config.get("extra") == "allow":
                    return ANY
                fields = get_cached_model_fields(model)
            else:
                fields = [field]
            for one in fields:
                keys = _aliases(one)
                names.update(keys)
                if field_annotation_is_sequence(one.field_info.annotation):
                    lists.update(keys)
    return Accepted(frozenset(names), frozenset(lists))


def problems(query_string: bytes, allowed: Accepted) -> list[dict[str, str]]:
    """The detail entries of a 422 for this query string; [] when it is acceptable."""

    params = QueryParams(query_string)
    # A NUL arrives percent-encoded. PostgreSQL can neither store nor compare text holding
    # one (a filter such as ?external_id=a%00b was a 500), so it is refused here, once, for
    # every route's parameters.
    nul = b"%00" in query_string
    detail = []
    seen: set[str] = set()
    for key in params:
        if key in seen:
            continue
        seen.add(key)
        if key not in allowed.names:
            detail.append({"field": f"query.{key}", "message": "unknown query parameter", "type": "extra_forbidden"})
        elif key not in allowed.lists and len(params.getlist(key)) > 1:
            detail.append(
                {
                    "field": f"query.{key}",
                    "message": "given more than once; this parameter takes one value",
                    "type": "multiple_values",
                }
            )
        elif nul and any("\x00" in value for value in params.getlist(key)):
            detail.append(
                {"field": f"query.{key}", "message": "must not contain a NUL character", "type": "value_error"}
            )
    return detail


def _entries(app: FastAPI) -> list[Entry]:
    """(path regex, methods, route, Accepted or ANY) in FastAPI's order."""

    oauth_redirect = getattr(app, "swagger_ui_oauth2_redirect_url", None)
    entries: list[Entry] = []

    def add(regex: Any, methods: set[str] | None, route: Any, dependant: Dependant | None) -> None:
        if dependant is not None:
            entries.append((regex, methods, route, accepted(dependant)))
        elif isinstance(route, routing.Route) and route.path != oauth_redirect:
            entries.append((regex, methods, route, NOTHING))
        else:
            entries.append((regex, methods, route, ANY))

    for route in app.router.routes:
        if _IncludedRouter is not None and isinstance(route, _IncludedRouter):
            for context in route.effective_route_contexts():
                original = getattr(context, "original_route", None)
                dependant = context.dependant if isinstance(original, APIRoute) else None
                add(context.path_regex, context.methods, original, dependant)
        elif isinstance(route, APIRoute):
            add(route.path_regex, route.methods, route, route.dependant)
        elif isinstance(route, routing.Route):
            add(route.path_regex, route.methods, route, None)
        elif (regex := getattr(route, "path_regex", None)) is not None:  # a mount: what it serves is its own
            entries.append((regex, None, route, ANY))
        else:  # a kind of route this does not know: it and what follows go unchecked
            entries.append((None, None, route, ANY))
    return entries


class UnknownQueryGuard:
    """ASGI middleware refusing unknown or repeated query parameters with 422 (see above).

    `fastapi_app` is the app whose routes it checks; their table is built on the first
    request with a query string, when every route is there.
    """

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app
        self._entries: list[Entry] | None = None

    def _accepted(self, scope: Scope) -> Accepted | None:
        if self._entries is None:
            self._entries = _entries(self.fastapi_app)
        path, method = scope["path"], scope["method"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root) :]
        for regex, methods, route, allowed in self._entries:
            if regex is None:
                return ANY
            if regex.match(path) is not None and (not methods or method in methods):
                if allowed is not ANY:
                    scope["route"] = route  # metrics and logs label the refusal by its route
                return allowed
        return ANY  # no route: FastAPI answers 404 or 405

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["query_string"]:
            allowed = self._accepted(scope)
            if allowed is not ANY:
                detail = problems(scope["query_string"], allowed)
                if detail:
                    body = orjson.dumps({"error": "validation_error", "detail": detail})
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 422,
                            "headers": [
                                (b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
