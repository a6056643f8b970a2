"""Cursor pagination (`limit`, `cursor` → `next_cursor`), as Twenty and HubSpot do.

A cursor is an opaque, URL-safe encoding of the sort key of the last item served.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel

from shared.errors import AppError

T = TypeVar("T")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


# A cursor is unpadded base64url: the rule the OpenAPI document states, checked here too.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"  # empty: the first page
MAX_CURSOR_LENGTH = 1024
_CURSOR = re.compile(CURSOR_PATTERN)


class InvalidCursor(AppError):
    status_code = 400
    error = "invalid_cursor"


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key), default=str)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH or _CURSOR.match(cursor) is None:
        raise InvalidCursor("cursor is not one this API issued")
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception as exc:  # noqa: BLE001
        raise InvalidCursor("cursor is not one this API issued") from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursor("cursor is not one this API issued")
    return key


def decode_time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (time, id) key of a list ordered by time then id, from its cursor."""

    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        return datetime.fromisoformat(key[0]), str(key[1])
    except (TypeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc


LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
CursorParam = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page (opaque; a cursor this API did not issue is 400 `invalid_cursor`)",
        # Stated in the document, checked by decode_cursor (a 400, as any other cursor it cannot read).
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": MAX_CURSOR_LENGTH},
    ),
]


def page_of(rows: list[T], limit: int, key) -> tuple[list[T], str | None]:
    """Given up to limit+1 rows, cut to `limit` and build the next cursor from the last row kept."""

    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key(rows[-1]))
    return rows, None
