"""identify's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime

from services.identify import service, transactions
from services.identify.schemas import (
    BatchOut,
    CustomerCreate,
    CustomerOut,
    CustomerPatch,
    TransactionBatch,
    TransactionCreate,
    TransactionOut,
    TransactionPage,
)
from shared.deps import ReadSession, WriteSession
from shared.errors import NotFound
from shared.pagination import PagingByTime

router = APIRouter(prefix="/v1", tags=["identify"])


@router.post("/customers", status_code=status.HTTP_201_CREATED, response_model=CustomerOut)
async def create_customer(body: CustomerCreate, session: WriteSession):
    """Create a customer; email (case-insensitive) and external_id are unique."""
    return await service.create_customer(session=session, data=body)


@router.get("/customers/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, session: ReadSession):
    """One customer."""
    customer = await service.repository.read_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id}")
    return customer


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
async def patch_customer(customer_id: str, body: CustomerPatch, session: WriteSession):
    """Change some fields; send null to clear one."""
    return await service.update_customer(session=session, customer_id=customer_id, patch=body)


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
    transaction, created = await transactions.record_one(session=session, data=body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TransactionOut.of(transaction)


@router.post("/transactions:batch", response_model=BatchOut)
async def record_transaction_batch(body: TransactionBatch, session: WriteSession):
    """Record 1 to 1,000 purchases, answered item by item (created, duplicate by
    `external_id`, or that item's error, `idempotency_conflict` included); a bad item
    does not stop the others."""
    items = await transactions.record_batch(session=session, items=body.items)
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
    since: Annotated[AwareDatetime | None, Query(alias="from", description="occurred_at at or after (inclusive)")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to", description="occurred_at before (exclusive)")] = None,
):
    """Transactions across customers, newest first (occurred_at, then id); every filter optional.
    `from` and `to` need a time zone; `from` after `to` is 422."""
    rows = await transactions.search_transactions(
        session=session, customer_id=customer_id, since=since, until=until, before=page.after, limit=page.fetch
    )
    return page.of(rows, _by_time, TransactionOut.of)


@router.get("/customers/{customer_id}/transactions", response_model=TransactionPage)
async def list_transactions(customer_id: str, session: ReadSession, page: PagingByTime):
    """The customer's transactions, newest first."""
    rows = await transactions.list_transactions(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return page.of(rows, _by_time, TransactionOut.of)


def _by_time(transaction) -> tuple[datetime, str]:
    return transaction.occurred_at, transaction.id
