"""What GET /v1/customers and its export accept: filters, sort and the cursor, checked
once here so the list and the export read one query the same way."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query

from services.identify.analysis.rfm import SEGMENTS
from services.identify.customers.normalize import phone_key
from services.identify.portfolio.scoring import KINDS
from shared.http.errors import field_error
from shared.http.pagination import ID, KeyPart, PageParams, invalid_cursor, page_params

MIN_Q = 3
MAX_Q = 200

# Sort keys: what the API calls them, whether their value can be missing (NULL: sorted
# last in both directions, on every database), and how a cursor's JSON value reads back.
SORT_KEYS: dict[str, tuple[bool, Any]] = {
    "id": (False, str),
    "name": (True, str),
    "created_at": (False, datetime.fromisoformat),
    "clv": (True, float),
    "last_purchase": (True, datetime.fromisoformat),
}
SORTS = tuple(f"{sign}{key}" for key in SORT_KEYS if key != "id" for sign in ("", "-"))


@dataclass(frozen=True, slots=True)
class CustomerFilter:
    """Filters of a customer list, combined with AND. `phone_key` is the E.164 form."""

    email_key: str | None = None
    external_id: str | None = None
    phone_key: str | None = None
    q: str | None = None
    segment: str | None = None
    kind: str | None = None
    min_clv: float | None = None
    max_clv: float | None = None
    last_purchase_before: datetime | None = None
    last_purchase_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Sort:
    key: str  # one of SORT_KEYS
    descending: bool = False

    @property
    def token(self) -> str:
        return f"-{self.key}" if self.descending else self.key

    @property
    def nullable(self) -> bool:
        return SORT_KEYS[self.key][0]


DEFAULT_SORT = Sort("id")


@dataclass(frozen=True, slots=True)
class After:
    """Where a page starts: after the row with this sort value (None in the NULLs phase) and id."""

    nulls: bool
    value: Any
    id: str


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise field_error(f"query.{name}", f"{name} needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    return value


def _finite(name: str, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise field_error(f"query.{name}", f"{name} must be a finite number")
    return value


def search_text(q: str | None) -> str | None:
    """The substring to look for: trimmed; at least MIN_Q characters; no control
    characters (the PostgreSQL index joins the searched fields with one)."""

    if q is None:
        return None
    q = q.strip()
    if len(q) < MIN_Q:
        raise field_error("query.q", f"q needs at least {MIN_Q} characters")
    if len(q) > MAX_Q:
        raise field_error("query.q", f"q takes at most {MAX_Q} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in q):
        raise field_error("query.q", "q must not contain control characters")
    return q


def parse_sort(sort: str | None) -> Sort:
    if sort is None:
        return DEFAULT_SORT
    if sort not in SORTS:
        raise field_error("query.sort", f"unknown sort {sort!r}; one of: {', '.join(SORTS)}")
    return Sort(sort.lstrip("-"), sort.startswith("-"))


def _nulls(value: Any) -> bool:
    if value not in (0, 1):
        raise ValueError("not 0 or 1")
    return bool(value)


def _sort_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _as_is(value: Any) -> Any:
    return value  # read back for the sort it was issued for, by `position`


# A page of customers starts after (sort, NULLs phase, sort value, id): the sort is in the
# cursor so that a cursor of another sort is refused instead of misread.
CUSTOMER_CURSOR = (ID, KeyPart(int, _nulls), KeyPart(_sort_value, _as_is), ID)
CustomerPaging = Annotated[PageParams[tuple[str, bool, Any, str]], Depends(page_params(*CUSTOMER_CURSOR))]


def position(key: tuple[str, bool, Any, str] | None, sort: Sort) -> After | None:
    """Where a page starts; a cursor another sort issued is 422 naming `cursor` (its
    position means nothing under this sort), as a forged one is."""

    if key is None:
        return None
    token, nulls, value, row_id = key
    if token != sort.token:
        raise invalid_cursor(f"this cursor was issued for sort={token}; repeat that sort or drop the cursor")
    if nulls:
        if value is not None:
            raise invalid_cursor()
        return After(True, None, row_id)
    try:
        return After(False, SORT_KEYS[sort.key][1](value), row_id)
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


# The query parameters, declared once for the list and the export.
EmailQ = Annotated[str | None, Query(max_length=320, description="Exact email, case-insensitive")]
ExternalIdQ = Annotated[str | None, Query(max_length=200, description="Exact external id")]
PhoneQ = Annotated[
    str | None,
    Query(
        max_length=50,
        description="Exact phone: compared in E.164 after the normalisation identify applies "
        "to stored phones (a number without a country code is read in the default region)",
    ),
]
SearchQ = Annotated[
    str | None,
    Query(
        description=f"Case-insensitive substring ({MIN_Q} to {MAX_Q} characters, trimmed) of the name, email, "
        "phone (as given or in E.164) or external id; % and _ are plain characters",
        json_schema_extra={"minLength": MIN_Q, "maxLength": MAX_Q},
    ),
]
SegmentQ = Annotated[
    str | None,
    Query(description=f"RFM segment: one of {', '.join(SEGMENTS)}", json_schema_extra={"enum": list(SEGMENTS)}),
]
KindQ = Annotated[
    str | None,
    Query(
        description=f"Strategically significant kind: one of {', '.join(KINDS)}",
        json_schema_extra={"enum": list(KINDS)},
    ),
]
MinClvQ = Annotated[
    float | None, Query(description="Predicted CLV at least this (customers not yet scored are left out)")
]
MaxClvQ = Annotated[
    float | None, Query(description="Predicted CLV at most this (customers not yet scored are left out)")
]
BeforeQ = Annotated[datetime | None, Query(description="Last purchase strictly before this instant (with a time zone)")]
AfterQ = Annotated[datetime | None, Query(description="Last purchase at or after this instant (with a time zone)")]
SortQ = Annotated[
    str | None,
    Query(
        description="Order: name, created_at, clv (predicted) or last_purchase; a leading - descends. Customers "
        "without a value (no name, not scored, no purchase) come last either way. Default: oldest first (id).",
        json_schema_extra={"enum": list(SORTS)},
    ),
]


def customer_filter(
    *, email, external_id, phone, q, segment, kind, min_clv, max_clv, last_purchase_before, last_purchase_after
) -> CustomerFilter:
    if segment is not None and segment not in SEGMENTS:
        raise field_error("query.segment", f"unknown segment {segment!r}; one of: {', '.join(SEGMENTS)}")
    if kind is not None and kind not in KINDS:
        raise field_error("query.kind", f"unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    e164 = None
    if phone is not None:
        e164 = phone_key(phone)
        if e164 is None:
            raise field_error("query.phone", "not a valid phone number")
    _finite("min_clv", min_clv)
    _finite("max_clv", max_clv)
    if min_clv is not None and max_clv is not None and min_clv > max_clv:
        raise field_error("query.max_clv", "max_clv is below min_clv")
    _aware("last_purchase_before", last_purchase_before)
    _aware("last_purchase_after", last_purchase_after)
    if email is not None and not email.strip():
        raise field_error("query.email", "email must not be blank")
    if external_id is not None and not external_id:
        raise field_error("query.external_id", "external_id must not be blank")
    return CustomerFilter(
        email_key=email.strip().lower() if email is not None else None,
        external_id=external_id,
        phone_key=e164,
        q=search_text(q),
        segment=segment,
        kind=kind,
        min_clv=min_clv,
        max_clv=max_clv,
        last_purchase_before=last_purchase_before,
        last_purchase_after=last_purchase_after,
    )
