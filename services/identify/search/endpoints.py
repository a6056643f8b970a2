"""Finding customers: GET /v1/customers (filters, substring search, sort, keyset pages)
and the exports of that list and of a period's transactions.

This router is included before identify's main one: `/v1/customers/export` must be
matched before `/v1/customers/{customer_id}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from services.identify.customers.schemas import CustomerPage
from services.identify.search import export, repository
from services.identify.search.schemas import (
    After,
    AfterQ,
    BeforeQ,
    CustomerFilter,
    CustomerPaging,
    EmailQ,
    ExternalIdQ,
    KindQ,
    MaxClvQ,
    MinClvQ,
    PhoneQ,
    SearchQ,
    SegmentQ,
    Sort,
    SortQ,
    customer_filter,
    parse_sort,
    position,
)
from shared.db.database import utcnow
from shared.http.deps import ReadSession
from shared.http.errors import field_error

router = APIRouter(prefix="/v1", tags=["identify"])

FormatQ = Annotated[str, Query(description="csv or ndjson", json_schema_extra={"enum": list(export.FORMATS)})]

# The export columns a customer's scores fill (null until a refit scored the customer).
SCORE_COLUMNS = (
    "segment",
    "recency",
    "frequency",
    "monetary",
    "historic_clv",
    "predicted_clv",
    "expected_purchases",
    "probability_alive",
    "kinds",
    "model_version",
    "scored_at",
)
CUSTOMER_COLUMNS = (
    "id",
    "email",
    "external_id",
    "name",
    "phone",
    "phone_e164",
    "referred_by",
    "purchase_count",
    "created_at",
    "updated_at",
    *SCORE_COLUMNS,
    "purchases",
    "first_purchase_at",
    "last_purchase_at",
    "total_spend",
)
TRANSACTION_COLUMNS = (
    "id",
    "customer_id",
    "amount",
    "currency",
    "reporting_amount",
    "reporting_currency",
    "occurred_at",
    "external_id",
    "margin",
    "cost",
    "status",
    "refunded_amount",
    "recorded_at",
)


def _format(value: str) -> str:
    if value not in export.FORMATS:
        raise field_error("query.format", f"unknown format {value!r}; one of: {', '.join(export.FORMATS)}")
    return value


def _cursor_key(row: dict, sort: Sort) -> tuple[str, bool, Any, str]:
    nulls = row["_nulls"]
    return sort.token, nulls, None if nulls else repository.sort_value(row, sort), row["id"]


def _after(row: dict, sort: Sort) -> After:
    _, nulls, value, row_id = _cursor_key(row, sort)
    return After(nulls, value, row_id)


async def _search(
    email: EmailQ = None,
    external_id: ExternalIdQ = None,
    phone: PhoneQ = None,
    q: SearchQ = None,
    segment: SegmentQ = None,
    kind: KindQ = None,
    min_clv: MinClvQ = None,
    max_clv: MaxClvQ = None,
    last_purchase_before: BeforeQ = None,
    last_purchase_after: AfterQ = None,
    sort: SortQ = None,
) -> tuple[CustomerFilter, Sort]:
    """The filters and sort of the list and the export, declared and checked once."""

    where = customer_filter(
        email=email,
        external_id=external_id,
        phone=phone,
        q=q,
        segment=segment,
        kind=kind,
        min_clv=min_clv,
        max_clv=max_clv,
        last_purchase_before=last_purchase_before,
        last_purchase_after=last_purchase_after,
    )
    return where, parse_sort(sort)


Search = Annotated[tuple[CustomerFilter, Sort], Depends(_search)]


@router.get("/customers", response_model=CustomerPage)
async def list_customers(session: ReadSession, page: CustomerPaging, search: Search):
    """Find customers: exact filters, substring search `q`, facets and `sort` (oldest first by default).

    Filters combine (AND). Merged customers are left out: they are reached through their survivor."""

    where, order = search
    after = position(page.after, order)
    rows = await repository.search_customers(session, where=where, sort=order, after=after, limit=page.fetch)
    return page.of(rows, lambda row: _cursor_key(row, order))


def _customer_record(row: dict) -> dict:
    scores = row["scores"] or {}
    record = {column: row.get(column) for column in CUSTOMER_COLUMNS}
    record["phone_e164"] = row["phone_key"]
    for name in SCORE_COLUMNS:
        record[name] = scores.get(name)
    return record


@router.get(
    "/customers/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The customers as CSV or NDJSON, one per line, streamed",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        }
    },
)
async def export_customers(session: ReadSession, search: Search, format: FormatQ = "csv"):
    """Stream the customers GET /v1/customers finds (same filters and sort, no pages) with scores, as CSV or NDJSON.

    One line per customer with its scores and purchase summary; text cells that start like
    a formula are neutralised in CSV."""

    file_format = _format(format)
    where, order = search

    async def next_chunk(after):
        rows = await repository.search_customers(session, where=where, sort=order, after=after, limit=export.CHUNK_ROWS)
        return [_customer_record(row) for row in rows], (_after(rows[-1], order) if rows else None)

    return StreamingResponse(
        export.stream_rows(file_format, CUSTOMER_COLUMNS, next_chunk),
        media_type=export.MEDIA_TYPES[file_format],
        headers={"Content-Disposition": export.content_disposition("customers", file_format, utcnow())},
    )


@router.get(
    "/transactions/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The period's transactions as CSV or NDJSON, one per line, streamed",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        }
    },
)
async def export_transactions(
    session: ReadSession,
    from_: Annotated[datetime, Query(alias="from", description="Start (inclusive), with a time zone")],
    to: Annotated[datetime, Query(description="End (exclusive), with a time zone")],
    format: FormatQ = "csv",
):
    """Stream every customer's transactions with from <= occurred_at < to (by customer, then time), as CSV or NDJSON."""

    file_format = _format(format)
    for name, value in (("from", from_), ("to", to)):
        if value.tzinfo is None:
            raise field_error(f"query.{name}", f"{name} needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    if to <= from_:
        raise field_error("query.to", "to must be after from")

    async def next_chunk(after):
        rows = await repository.transactions_between(session, start=from_, end=to, after=after, limit=export.CHUNK_ROWS)
        last = rows[-1] if rows else None
        return rows, ((last["customer_id"], last["occurred_at"], last["id"]) if last else None)

    return StreamingResponse(
        export.stream_rows(file_format, TRANSACTION_COLUMNS, next_chunk),
        media_type=export.MEDIA_TYPES[file_format],
        headers={"Content-Disposition": export.content_disposition("transactions", file_format, utcnow())},
    )
