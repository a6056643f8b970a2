"""A light path for simple reads: GET routes whose only inputs are path
parameters and a ReadSession (e.g. identify's `GET /v1/customers/{id}`); the
simple writes get theirs from shared/http/fast_writes.py, routed here too.

For such a route FastAPI walks its router (each route costs a few µs to test in
FastAPI 0.16x), builds a Request, solves the dependencies inside exit stacks and
wraps the result in a Response: more than half of what a one-row read cost. The
light path finds the same route by FastAPI's own rule (first full match, in
FastAPI's order), calls the endpoint with its validated path parameters and a
read session, and validates and serializes the result with the route's own
response field, so the bytes are the same. Anything unusual goes to FastAPI,
which answers as it always does: a dependency override, a query string (refused
by shared/http/query_params.py: these routes take none), an invalid path
parameter, an endpoint that raises (e.g. NotFound: the read-only endpoint then
runs again), a result that fails validation, or a route kind this does not know.

It relies on FastAPI's effective route contexts (private to FastAPI 0.16x); if
they are missing, nothing is installed and FastAPI serves every route.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from starlette import routing
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared.http.deps import _read_session, open_read_session
from shared.http.fast_writes import light_write_handler, response_dump_options, validated_path_params

log = logging.getLogger("valuechain.app")

try:  # private to FastAPI: degrade to FastAPI's own handlers if it changes
    from fastapi.routing import _IncludedRouter
except ImportError:  # pragma: no cover
    _IncludedRouter = None  # type: ignore[misc, assignment]

_JSON = b"application/json"

LightHandler = Callable[[Scope, Receive, Send], Awaitable[bool]]
# (path regex, methods, convertors, route, light handler or None); None = stop: FastAPI routes from here on
Entry = tuple[Any, set[str] | None, dict[str, Any], routing.BaseRoute, LightHandler | None]


class LightRouter:
    """FastAPI's route order, flattened, to find a light route without FastAPI's router.

    The first route whose path and method match is the one FastAPI would pick
    (first full match wins). If it has a light handler, that handler serves the
    request; otherwise, or if anything in front of it is a kind of route this
    does not understand (a mount, a frontend group), FastAPI routes the request.
    """

    def __init__(self, entries: list[Entry | None]):
        self.entries = entries

    def select(self, scope: Scope) -> tuple[LightHandler, routing.BaseRoute, dict[str, Any]] | None:
        """(light handler, route, path params) for this request, or None to let FastAPI route it."""

        if scope.get("root_path"):
            return None
        path = scope["path"]
        method = scope["method"]
        for entry in self.entries:
            if entry is None:
                return None
            regex, methods, convertors, route, handler = entry
            match = regex.match(path)
            if match is None or (methods and method not in methods):
                continue
            if handler is None:
                return None
            params = {key: convertors[key].convert(value) for key, value in match.groupdict().items()}
            return handler, route, params
        return None


def install(app: FastAPI) -> LightRouter | None:
    """Give every eligible route of `app` a light handler; None if there are none."""

    if _IncludedRouter is None:
        return None
    entries: list[Entry | None] = []
    try:
        for route in app.router.routes:
            if isinstance(route, _IncludedRouter):
                for context in route.effective_route_contexts():
                    entries.append(_entry(app, context))
            elif type(route) is routing.Route:
                entries.append((route.path_regex, route.methods, route.param_convertors, route, None))
            else:
                entries.append(None)
    except Exception:  # FastAPI's internals changed: FastAPI routes everything
        log.warning("light read handlers not installed", exc_info=True)
        return None
    if not any(entry is not None and entry[4] is not None for entry in entries):
        return None
    return LightRouter(entries)


def _entry(app: FastAPI, context: Any) -> Entry | None:
    original = getattr(context, "original_route", None)
    if not isinstance(original, APIRoute):
        return None
    handler = _light_handler(app, context) or light_write_handler(app, context)
    return (context.path_regex, context.methods, context.param_convertors, original, handler)


def _session_param(context: Any) -> str | None:
    """The name of the route's ReadSession parameter, if the route is a simple read."""

    dependant = getattr(context, "dependant", None)
    if dependant is None or getattr(context, "methods", None) != {"GET"}:
        return None
    if dependant.query_params or dependant.header_params or dependant.cookie_params or dependant.body_params:
        return None
    special = (
        dependant.request_param_name,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(special) or context.body_field is not None or context.stream_item_field is not None:
        return None
    if context.is_sse_stream or context.is_json_stream or not inspect.iscoroutinefunction(dependant.call):
        return None
    if context.response_field is None or not isinstance(context.response_class, DefaultPlaceholder):
        return None
    if context.status_code not in (None, 200):
        return None
    if len(dependant.dependencies) != 1 or dependant.dependencies[0].call is not _read_session:
        return None
    name: str | None = dependant.dependencies[0].name
    return name


def _light_handler(app: FastAPI, context: Any) -> LightHandler | None:
    session_param = _session_param(context)
    if session_param is None:
        return None
    endpoint = context.dependant.call
    path_fields = context.dependant.path_params
    response_field = context.response_field
    dump_options = response_dump_options(context)

    async def light(scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request; False (nothing sent) to let FastAPI serve it instead."""

        if app.dependency_overrides or scope["query_string"]:
            return False  # these routes take no query parameters: shared.http.query_params refuses any
        values = validated_path_params(path_fields, scope["path_params"])
        if values is None:
            return False
        values[session_param] = open_read_session(app, scope)
        try:
            content = await endpoint(**values)
            if isinstance(content, Response):
                await content(scope, receive, send)
                return True
            value, errors = response_field.validate(content, {}, loc=("response",))
            if errors:
                return False
            body = response_field.serialize_json(value, **dump_options)
        except Exception:  # noqa: BLE001 - FastAPI's handler renders it exactly as before
            return False
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    return light
