"""A light path for simple writes: POST, PUT and PATCH routes whose only inputs are path
parameters, one JSON body model, a WriteSession and, optionally, the `Response` whose
status the endpoint sets (e.g. identify's `POST /v1/transactions`).

Around such an endpoint FastAPI walks its router, builds a Request, reads and parses the
body, solves the dependencies inside exit stacks and wraps the result in a Response:
about a third of what identify spent on a purchase (docs/benchmarks.md, "CPU per
purchase"). The light path (installed beside the light reads, shared/http/fast_reads.py)
reads the body, parses it as FastAPI does (the standard library's JSON) and validates it
with the route's own body field, then runs the endpoint and validates and serializes its
result with the route's own response field, all inside the one write transaction, which
commits after the serialization, as FastAPI's function-scoped WriteSession does.

Anything unusual goes to FastAPI, from the start and with the same body bytes, and it
answers as it always does: a dependency override, a query string (refused by
shared/http/query_params.py), a body that is not `application/json` or that fails to
parse or validate, an invalid path parameter, an endpoint that raises or a result that
fails validation (the transaction rolled back first, so only FastAPI's run counts), a
failed commit (nothing was written).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from shared.db.uow import transaction
from shared.http.deps import _write_session

# Where the light path leaves the request's receive for FastAPI when it hands a write over:
# the body messages it read, then the connection's own.
HANDED_OVER_RECEIVE = "valuechain.handed_over_receive"

_WRITE_METHODS = ({"POST"}, {"PUT"}, {"PATCH"})
_JSON = b"application/json"


def _write_params(context: Any) -> tuple[str, str, str | None] | None:
    """(session, body, response) parameter names, if the route is a simple write."""

    dependant = getattr(context, "dependant", None)
    if dependant is None or getattr(context, "methods", None) not in _WRITE_METHODS:
        return None
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        return None
    if len(dependant.body_params) != 1 or context.body_field is None:
        return None
    body = dependant.body_params[0]
    if context.body_field is not body or getattr(context, "_embed_body_fields", False):
        return None  # an embedded body ({"name": {...}}): FastAPI's
    special = (
        dependant.request_param_name,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(special) or context.stream_item_field is not None:
        return None
    if context.is_sse_stream or context.is_json_stream or not inspect.iscoroutinefunction(dependant.call):
        return None
    if context.response_field is None or not isinstance(context.response_class, DefaultPlaceholder):
        return None
    if context.status_code not in (None, 200, 201, 202):
        return None
    if len(dependant.dependencies) != 1 or dependant.dependencies[0].call is not _write_session:
        return None
    session: str | None = dependant.dependencies[0].name
    if session is None:
        return None
    return session, body.name, dependant.response_param_name


def response_dump_options(context: Any) -> dict[str, Any]:
    """How the route's response model is dumped, as FastAPI dumps it."""

    return {
        "include": context.response_model_include,
        "exclude": context.response_model_exclude,
        "by_alias": context.response_model_by_alias,
        "exclude_unset": context.response_model_exclude_unset,
        "exclude_defaults": context.response_model_exclude_defaults,
        "exclude_none": context.response_model_exclude_none,
    }


def validated_path_params(fields: list[Any], path_params: dict[str, Any]) -> dict[str, Any] | None:
    """The route's path parameters validated by their own fields; None if one is invalid."""

    values: dict[str, Any] = {}
    for field in fields:
        value, errors = field.validate(path_params.get(field.alias), values, loc=("path", field.alias))
        if errors:
            return None
        values[field.name] = value
    return values


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value == _JSON)
    return False


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages up to the end of its body, and the body (None if it did not end)."""

    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None  # the client went away: FastAPI's to answer
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def light_write_handler(app: FastAPI, context: Any) -> Callable[[Scope, Receive, Send], Awaitable[bool]] | None:
    params = _write_params(context)
    if params is None:
        return None
    session_param, body_param, response_param = params
    endpoint = context.dependant.call
    path_fields = context.dependant.path_params
    body_field = context.body_field
    response_field = context.response_field
    default_status = context.status_code or 200
    dump_options = response_dump_options(context)

    async def light(scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request; False (nothing sent) to let FastAPI serve it instead."""

        if app.dependency_overrides or scope["query_string"] or not _is_json(scope):
            return False
        messages, body = await _read_body(receive)
        scope[HANDED_OVER_RECEIVE] = _replaying(messages, receive)  # if FastAPI is to answer
        if not body:
            return False
        values = validated_path_params(path_fields, scope["path_params"])
        if values is None:
            return False
        try:
            parsed = json.loads(body)  # as Request.json() does: the same values, NaN included
        except ValueError:
            return False
        model, errors = body_field.validate(parsed, values, loc=("body",))
        if errors:
            return False
        values[body_param] = model
        sub_response = Response()  # as FastAPI hands it: no status, no content-length
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        if response_param is not None:
            values[response_param] = sub_response
        try:
            async with transaction(app.state.runtime.db.writer) as session:
                values[session_param] = session
                content = await endpoint(**values)
                if isinstance(content, Response):
                    raise TypeError("a Response from the endpoint: FastAPI's to send")
                value, errors = response_field.validate(content, {}, loc=("response",))
                if errors:
                    raise ValueError("the response failed validation: FastAPI answers it")
                payload = response_field.serialize_json(value, **dump_options)
                status = sub_response.status_code or default_status
                if status not in (200, 201, 202):
                    raise ValueError(f"status {status}: FastAPI's to answer")
        except Exception:  # noqa: BLE001 - rolled back; FastAPI's handler renders it exactly as before
            return False
        scope.pop(HANDED_OVER_RECEIVE, None)
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]
        headers.extend(sub_response.headers.raw)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return True

    return light
