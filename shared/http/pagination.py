"""Cursor pagination (`limit`, `cursor` → `next_cursor`), as Twenty and HubSpot do, built
once for every list as Polar builds it (`PaginationParamsQuery` + `ListResource`).

A list declares the shape of its sort key (`page_params(INSTANT, ID)`: time, then id)
and takes the dependency that reads `limit` and `cursor` against that shape; the page
it answers is a `Page[T]`. A cursor is an opaque, URL-safe encoding of the key of the
last item served, written and read by the same declaration. One this API did not
issue (not base64url, too long, not JSON, another shape, values of the wrong type) is
422 naming `query.cursor`, on every list, like any other invalid field.

    TransactionPaging = Annotated[PageParams[tuple[datetime, str]], Depends(page_params(INSTANT, ID))]

    @router.get("/transactions", response_model=TransactionPage)
    async def list_transactions(session: ReadSession, page: TransactionPaging):
        rows = await repository.transactions(session, before=page.after, limit=page.fetch)
        return page.of(rows, lambda t: (t.occurred_at, t.id), TransactionOut.of)

    class TransactionPage(Page[TransactionOut]):  # the name the OpenAPI document shows
        pass
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel

from shared.http.errors import AppError, InvalidRequest, field_error

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=tuple[Any, ...])
V = TypeVar("V")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    """A page of a list. Each list answers a subclass, `class CustomerPage(Page[CustomerOut])`,
    whose name is the schema's name in the OpenAPI document."""

    items: list[T]
    next_cursor: str | None = None


# A cursor is unpadded base64url: the rule the OpenAPI document states, checked here too.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"  # empty: the first page
MAX_CURSOR_LENGTH = 1024
_CURSOR = re.compile(CURSOR_PATTERN)
CURSOR_FIELD = "query.cursor"
NOT_ISSUED = "not a cursor this API issued: pass a `next_cursor` back as it came, or drop the cursor"


class InvalidCursor(InvalidRequest):
    """A cursor that cannot be read: 422 naming `query.cursor`, as any invalid field is."""


def invalid_cursor(message: str = NOT_ISSUED) -> AppError:
    return field_error(CURSOR_FIELD, message, InvalidCursor)


@dataclass(frozen=True, slots=True)
class KeyPart(Generic[V]):
    """One value of a sort key: how it is written into a cursor (JSON) and read back.

    `read` refuses (TypeError or ValueError) any value `write` could not have written."""

    write: Callable[[V], Any]
    read: Callable[[Any], V]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _integer(value: Any) -> int:
    # Within a signed 64-bit column on both databases; a bool is JSON true/false, not a number.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise TypeError("not a row number")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not a number")
    return float(value)


def _same(value: Any) -> Any:
    return value


ID: KeyPart[str] = KeyPart(_same, _text)  # an id or any other text
INTEGER: KeyPart[int] = KeyPart(_same, _integer)  # a row number, a line number
NUMBER: KeyPart[float] = KeyPart(_same, _number)
INSTANT: KeyPart[datetime] = KeyPart(datetime.isoformat, lambda value: datetime.fromisoformat(_text(value)))
DAY: KeyPart[date] = KeyPart(date.isoformat, lambda value: date.fromisoformat(_text(value)))


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key), default=str)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    """The JSON values of a cursor of `arity` values, unchecked; None for the first page."""

    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH or _CURSOR.match(cursor) is None:
        raise invalid_cursor()
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception as exc:  # any undecodable cursor is the client's
        raise invalid_cursor() from exc
    if not isinstance(key, list) or len(key) != arity:
        raise invalid_cursor()
    return key


def read_key(cursor: str | None, shape: Sequence[KeyPart[Any]]) -> tuple[Any, ...] | None:
    """The typed key a cursor holds, checked against the list's shape; None for the first page."""

    values = decode_cursor(cursor, len(shape))
    if values is None:
        return None
    try:
        return tuple(part.read(value) for part, value in zip(shape, values))
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


@dataclass(frozen=True, slots=True)
class PageParams(Generic[K]):
    """What a list is asked for: `limit` items after the key `after` (None: from the start)."""

    limit: int
    after: K | None
    shape: tuple[KeyPart[Any], ...]

    @property
    def after_value(self: PageParams[tuple[V]]) -> V | None:
        """The one value of a one-value key (an id, a line number); None for the first page."""
        return self.after[0] if self.after is not None else None

    @property
    def fetch(self) -> int:
        """Rows to ask the database for: one more than a page, to know whether another follows."""
        return self.limit + 1

    def of(
        self, rows: Sequence[R], key: Callable[[R], tuple[Any, ...]], item: Callable[[R], Any] | None = None
    ) -> dict[str, Any]:
        """The page of up to `fetch` rows: the first `limit` (each through `item`), and the
        cursor after the last of them when more rows follow. `key` gives a row's sort key
        in the declared shape."""

        if len(rows) > self.limit:
            kept = rows[: self.limit]
            last = key(kept[-1])
            next_cursor: str | None = encode_cursor(*(part.write(value) for part, value in zip(self.shape, last)))
        else:
            kept, next_cursor = rows, None
        return {"items": list(kept) if item is None else [item(row) for row in kept], "next_cursor": next_cursor}


LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
CursorParam = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page (opaque; a cursor this API did not issue is 422 naming "
        "`cursor`)",
        # Stated in the document, checked by decode_cursor (a 422, as any other cursor it cannot read).
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": MAX_CURSOR_LENGTH},
    ),
]


def page_params(
    *shape: KeyPart[Any], default_limit: int = DEFAULT_LIMIT
) -> Callable[[int, str | None], Awaitable[PageParams[Any]]]:
    """The dependency of a list whose sort key has this shape: `limit` and `cursor` read and checked.

    A coroutine, not a plain function: FastAPI runs a plain dependency on a worker thread,
    a hop each list request would pay for nothing."""

    parts = tuple(shape)

    async def read(limit: LimitParam = default_limit, cursor: CursorParam = None) -> PageParams[Any]:
        return PageParams(limit, read_key(cursor, parts), parts)

    return read


# The shapes most lists have.
PagingById = Annotated[PageParams[tuple[str]], Depends(page_params(ID))]
PagingByTime = Annotated[PageParams[tuple[datetime, str]], Depends(page_params(INSTANT, ID))]  # time, then id
