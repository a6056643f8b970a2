"""identify's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from fastapi import APIRouter, Response, status

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
from shared.pagination import CursorParam, InvalidCursor, LimitParam, decode_cursor, page_of

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
    responses={200: {"description": "A transaction with this external_id was already recorded; it is returned"}},
)
async def record_transaction(body: TransactionCreate, session: WriteSession, response: Response):
    """Record a purchase. Idempotent by `external_id`."""
    transaction, created = await transactions.record_one(session=session, data=body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return TransactionOut.of(transaction)


@router.post("/transactions:batch", response_model=BatchOut)
async def record_transaction_batch(body: TransactionBatch, session: WriteSession):
    """Record 1 to 1,000 purchases, answered item by item (created, duplicate by
    `external_id`, or that item's error); a bad item does not stop the others."""
    items = await transactions.record_batch(session=session, items=body.items)
    counts = Counter(item["status"] for item in items)
    return {"items": items, "created": counts["created"], "duplicates": counts["duplicate"], "errors": counts["error"]}


@router.get("/customers/{customer_id}/transactions", response_model=TransactionPage)
async def list_transactions(customer_id: str, session: ReadSession, limit: LimitParam = 50, cursor: CursorParam = None):
    """The customer's transactions, newest first."""
    key = decode_cursor(cursor, 2)
    try:
        before = (datetime.fromisoformat(key[0]), str(key[1])) if key else None
    except (TypeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    rows = await transactions.list_transactions(session=session, customer_id=customer_id, before=before, limit=limit + 1)
    items, next_cursor = page_of(rows, limit, lambda t: (t.occurred_at.isoformat(), t.id))
    return {"items": [TransactionOut.of(t) for t in items], "next_cursor": next_cursor}
