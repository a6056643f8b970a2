"""The error answers of every operation, written into the OpenAPI document as they really are.

FastAPI documents a 422 as its own `HTTPValidationError` (`loc`/`msg`) and no other
error, while every service answers errors as `{"error", "detail"}` (shared/service/app.py's
handlers): 422 with `detail` a list of `{"field", "message", "type"}` (a cursor this
API did not issue among them, naming `query.cursor`), 400 for malformed JSON (a field
list), 404, 409 and 500 with a sentence (but a `*_id` query parameter that names nothing
is 404 naming the field, as identify's and value's lists answer it). `exact_openapi(app)` replaces FastAPI's document
builder with one that post-processes the generated document once, when it is first
asked for, so every route, whoever adds it and however, gets the same treatment:

* FastAPI's `HTTPValidationError` / `ValidationError` schemas are replaced by ours;
* each operation lists the errors it can answer, by what the operation takes
  (`error_responses`): a body can be unreadable (400), a path or a
  `*_id` query parameter can name nothing (404) or a merged customer (409), a
  write can conflict (409), any input can be invalid (422), and anything can fail
  (500). An endpoint that answers an error its inputs do not show declares it
  with FastAPI's `responses=` (the description is kept, the body schema added).

The gateway applies `document_errors` to its merged document as well, so the
suite's one document says the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.http.docs_ui import install_docs

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
WRITE_METHODS = frozenset({"put", "post", "delete", "patch"})

REF = "#/components/schemas/"
ERROR = "Error"
FIELD_ERROR = "FieldError"
FIELD_ERRORS = "FieldErrors"

SCHEMAS: dict[str, dict[str, Any]] = {
    ERROR: {
        "title": ERROR,
        "type": "object",
        "description": "Every error but a field error: `error` is a stable code, `detail` says what happened.",
        "properties": {
            "error": {"type": "string", "examples": ["not_found", "conflict"]},
            "detail": {"type": "string"},
        },
        "required": ["error", "detail"],
    },
    FIELD_ERROR: {
        "title": FIELD_ERROR,
        "type": "object",
        "properties": {
            "field": {
                "type": "string",
                "description": "Where: `body.<field>` (`body.items.3.amount`), `query.<name>`, `path.<name>`, "
                "a form field's name, or `body` for the body as a whole",
            },
            "message": {"type": "string"},
            "type": {"type": "string", "description": "What kind of error, e.g. `missing`, `value_error`"},
        },
        "required": ["field", "message", "type"],
    },
    FIELD_ERRORS: {
        "title": FIELD_ERRORS,
        "type": "object",
        "description": "Fields the request got wrong, each named.",
        "properties": {
            "error": {"type": "string", "examples": ["validation_error", "malformed_json"]},
            "detail": {"type": "array", "items": {"$ref": REF + FIELD_ERROR}},
        },
        "required": ["error", "detail"],
    },
}
# FastAPI's own names, which no service answers with.
FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _content(*names: str) -> dict[str, Any]:
    schema = {"$ref": REF + names[0]} if len(names) == 1 else {"anyOf": [{"$ref": REF + n} for n in names]}
    return {"application/json": {"schema": schema}}


# status -> (default description, schema names)
ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "400": ("Unreadable request: malformed JSON (`malformed_json`, fields named)", (FIELD_ERRORS, ERROR)),
    "404": ("Nothing with that id (`not_found`)", (ERROR,)),
    "409": (
        "The request conflicts with the data: a duplicate, a resource in the wrong state, a merged "
        "customer (`customer_merged`, naming the id to use), or an `external_id` already used for "
        "another purchase (`idempotency_conflict`, the field named)",
        (ERROR, FIELD_ERRORS),
    ),
    "422": ("Invalid fields (`validation_error`): each named in `detail`", (FIELD_ERRORS,)),
    "500": ("An unexpected error on our side (`internal_error`)", (ERROR,)),
}


def _names_by_query(param: dict[str, Any]) -> bool:
    return param.get("in") == "query" and param.get("name", "").endswith("_id")


def error_responses(path: str, method: str, operation: dict[str, Any], item: dict[str, Any]) -> list[str]:
    """The error statuses an operation can answer, from what it takes."""

    params = [*item.get("parameters", ()), *operation.get("parameters", ())]
    has_body = "requestBody" in operation
    names_a_resource = any(p.get("in") == "path" or _names_by_query(p) for p in params)
    codes = ["422", "500"]
    if has_body:
        codes.append("400")
    if names_a_resource:
        codes.append("404")
    if names_a_resource or method in WRITE_METHODS:
        codes.append("409")
    return codes


def document_errors(doc: dict[str, Any], *, only: Callable[[str], bool] = lambda path: True) -> dict[str, Any]:
    """Put our error schemas and each operation's error answers into `doc` (in place)."""

    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    for path, item in doc.get("paths", {}).items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if only(path):
                for code in error_responses(path, method, operation, item):
                    responses.setdefault(code, {})
            params = [*item.get("parameters", ()), *operation.get("parameters", ())]
            for code, response in responses.items():
                if code in ERRORS:
                    description, names = ERRORS[code]
                    if code == "404" and any(_names_by_query(p) for p in params):
                        names = (ERROR, FIELD_ERRORS)  # a query id naming nothing: 404 naming the field
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = description
                    response["content"] = _content(*names)
    return doc


def exact_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `/openapi.json`) answer the document `document_errors` fixes."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document_errors(doc, only=lambda path: path.startswith("/v1/"))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the document


def document_api(app: FastAPI) -> None:
    """The exact document and the offline `/docs` (shared/http/docs_ui.py). The JSON 500 the
    document promises is answered by the services' RequestContextMiddleware (shared/service/app.py).

    Call it once every router is included (see `install_docs`)."""

    exact_openapi(app)
    install_docs(app)
