"""One error base class that carries its HTTP status and renders as {"error", "detail"}."""

from __future__ import annotations

from typing import Any


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


class InvalidRequest(AppError):
    """A well-formed request that breaks a rule (422 stays for payload validation)."""

    status_code = 422
    error = "validation_error"


def field_error(field: str, message: str, status: type[AppError] = InvalidRequest) -> AppError:
    """An error about one request field, shaped like FastAPI's validation errors."""

    return status([{"field": field, "message": message, "type": "value_error"}])
