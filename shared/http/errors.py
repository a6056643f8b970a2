"""One error base class that carries its HTTP status and renders as {"error", "detail"}."""

from __future__ import annotations

from typing import Any

import orjson


class AppError(Exception):
    status_code = 400
    error = "bad_request"

    def __init__(self, detail: Any = None, *, error: str | None = None):
        super().__init__(detail)
        self.detail = detail if detail is not None else self.error.replace("_", " ")
        if error:
            self.error = error

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail}


class NotFound(AppError):
    status_code = 404
    error = "not_found"


class Conflict(AppError):
    status_code = 409
    error = "conflict"


class MergedCustomer(Conflict):
    """A request named a customer that was merged: the one answer every service gives,
    409 `customer_merged` naming the survivor to use instead."""

    error = "customer_merged"

    def __init__(self, customer_id: str, survivor: str):
        super().__init__(f"customer {customer_id} was merged into {survivor}; use {survivor} instead")
        self.survivor = survivor


class InvalidRequest(AppError):
    """A well-formed request that breaks a rule (422 stays for payload validation)."""

    status_code = 422
    error = "validation_error"


def field_error(field: str, message: str, status: type[AppError] = InvalidRequest) -> AppError:
    """An error about one request field, shaped like FastAPI's validation errors."""

    return status([{"field": field, "message": message, "type": "value_error"}])


def item_errors(errors: list[Any], *prefix: str | int) -> dict[str, Any]:
    """A batch item's validation errors (pydantic's `ValidationError.errors()`) as the API's
    422 body, each field named from the body (`prefix` = "body", "items", index)."""

    detail = [
        {
            "field": ".".join(str(part) for part in (*prefix, *err.get("loc", ()))),
            "message": err.get("msg"),
            "type": err.get("type"),
        }
        for err in errors
    ]
    return {"error": InvalidRequest.error, "detail": detail}


# The `error` of an HTTP error that no AppError raised (a 404 from the router, ...).
HTTP_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    503: "unavailable",
}


def error_body(error: str, detail: Any) -> bytes:
    """An error answer as bytes, for the pure-ASGI code that sends it without FastAPI
    (the services' request middleware, the gateway's front)."""

    return orjson.dumps({"error": error, "detail": detail})


def internal_error_body(request_id: str) -> bytes:
    """What a client gets for an error of ours (the log has the rest)."""

    return error_body("internal_error", f"an unexpected error; it was logged with request id {request_id}")
