"""The transactions HTTP API (thin): purchases recorded and listed, their refunds and voids."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime

from services.identify.money.schemas import decimal_text
from services.identify.transactions import corrections, service
from services.identify.transactions.schemas import (
    BatchOut,
    RefundCreate,
    RefundPage,
    RefundRecorded,
    TransactionBatch,
    TransactionCreate,
    TransactionOut,
    TransactionPage,
    VoidCreate,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingByTime

router = APIRouter(prefix="/v1", tags=["identify"])


@router.post(
    "/transactions",
    status_code=status.HTTP_201_CREATED,
    response_model=TransactionOut,
    responses={
        200: {"description": "The same purchase was already recorded with this external_id; it is returned"},
        409: {"description": "`idempotency_conflict`: the external_id is another purchase's (the detail names it)"},
    },
)
async def record_transaction(body: TransactionCreate, session: WriteSession, response: Response):
    """Record a purchase. Idempotent by `external_id` (same purchase: 200; another: 409).

    The same customer, amount, currency and occurred_at under a recorded external_id
    answers 200 with the first transaction; any difference is 409 `idempotency_conflict`
    naming it."""
    transaction, created = await service.record_one(session=session, data=body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TransactionOut.of(transaction)


@router.post("/transactions:batch", response_model=BatchOut)
async def record_transaction_batch(body: TransactionBatch, session: WriteSession):
    """Record 1 to 1,000 purchases, answered item by item (created, duplicate by
    `external_id`, or that item's error, `idempotency_conflict` included); a bad item
    does not stop the others."""
    items = await service.record_batch(session=session, items=body.items)
    counts = Counter(item["status"] for item in items)
    return {"items": items, "created": counts["created"], "duplicates": counts["duplicate"], "errors": counts["error"]}


@router.get(
    "/transactions",
    response_model=TransactionPage,
    responses={404: {"description": "`customer_id` names no customer"}},
)
async def search_transactions(
    session: ReadSession,
    page: PagingByTime,
    customer_id: Annotated[str | None, Query(description="Only this customer's")] = None,
    since: Annotated[
        AwareDatetime | None, Query(alias="from", description="occurred_at at or after (inclusive)")
    ] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to", description="occurred_at before (exclusive)")] = None,
):
    """Transactions across customers, newest first (occurred_at, then id); every filter optional.
    `from` and `to` need a time zone; `from` after `to` is 422."""
    rows = await service.search_transactions(
        session=session, customer_id=customer_id, since=since, until=until, before=page.after, limit=page.fetch
    )
    return page.of(rows, _by_time, TransactionOut.of)


@router.get("/customers/{customer_id}/transactions", response_model=TransactionPage)
async def list_transactions(customer_id: str, session: ReadSession, page: PagingByTime):
    """The customer's transactions, newest first."""
    rows = await service.list_transactions(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return page.of(rows, _by_time, TransactionOut.of)


def _by_time(transaction) -> tuple[datetime, str]:
    return transaction.occurred_at, transaction.id


# Refunds and voids keep the money tag they were published under; main.py mounts this
# router after money's, where their routes have always been.
corrections_router = APIRouter(prefix="/v1", tags=["money"])


def _refund_out(refund, transaction) -> dict:
    return {
        "id": refund.id,
        "transaction_id": refund.transaction_id,
        "amount": decimal_text(refund.amount),
        "currency": transaction.currency,
        "reporting_amount": decimal_text(refund.reporting_amount),
        "reporting_currency": transaction.reporting_currency,
        "reason": refund.reason,
        "occurred_at": refund.occurred_at,
        "external_id": refund.external_id,
        "recorded_at": refund.recorded_at,
    }


@corrections_router.post(
    "/transactions/{transaction_id}/refund",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundRecorded,
    responses={200: {"description": "A refund with this external_id was already recorded; it is returned"}},
)
async def refund_transaction(transaction_id: str, body: RefundCreate, session: WriteSession, response: Response):
    """Refund part or all of a purchase (lowers revenue, not counts); 409 if voided, 422 if more than is left.

    Idempotent by `external_id`: the same key again answers 200 with the first refund."""
    refund, transaction, created = await corrections.refund(session=session, transaction_id=transaction_id, data=body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return {**_refund_out(refund, transaction), "transaction": TransactionOut.of(transaction)}


@corrections_router.post("/transactions/{transaction_id}/void", response_model=TransactionOut)
async def void_transaction(transaction_id: str, body: VoidCreate, session: WriteSession):
    """Void a purchase recorded in error: out of purchase counts, summaries and scores; twice is 409."""
    return TransactionOut.of(await corrections.void(session=session, transaction_id=transaction_id, reason=body.reason))


@corrections_router.get("/transactions/{transaction_id}/refunds", response_model=RefundPage)
async def list_refunds(transaction_id: str, session: ReadSession, page: PagingByTime):
    """A purchase's refunds, oldest first."""
    transaction, rows = await corrections.refunds(
        session=session, transaction_id=transaction_id, after=page.after, limit=page.fetch
    )
    return page.of(rows, lambda r: (r.occurred_at, r.id), lambda row: _refund_out(row, transaction))
