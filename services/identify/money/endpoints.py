"""The money HTTP API: exchange rates into the reporting currency, refunds and voids."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response, status

from services.identify.money import corrections, fx, repository
from services.identify.money.schemas import (
    MAX_RATES,
    FxRateIn,
    FxRateOut,
    FxRatePage,
    FxRatesStored,
    RefundCreate,
    RefundPage,
    RefundRecorded,
    VoidCreate,
)
from services.identify.schemas import TransactionOut, decimal_text
from shared.db import utcnow
from shared.deps import ReadSession, WriteSession
from shared.errors import InvalidRequest
from shared.pagination import DAY, ID, PagingByTime, PageParams, page_params
from shared.validation import Currency

router = APIRouter(prefix="/v1", tags=["money"])

# Rates by currency, then day (newest first).
RatePaging = Annotated[PageParams[tuple[str, date]], Depends(page_params(ID, DAY))]


@router.put("/fx-rates", response_model=FxRatesStored)
async def put_fx_rates(
    body: Annotated[list[FxRateIn], Body(min_length=1, max_length=MAX_RATES)], session: WriteSession
):
    """Load dated exchange rates into the reporting currency, all or nothing (422 naming the bad item).

    A rate of the same currency and day is replaced; one invalid item stores nothing."""
    reporting = fx.reporting_currency()
    errors = [
        {"field": f"body.{index}.currency", "message": f"{reporting} is the reporting currency: it needs no rate",
         "type": "value_error"}
        for index, item in enumerate(body) if item.currency == reporting
    ]
    if errors:
        raise InvalidRequest(errors)
    now = utcnow()
    rows = {(item.currency, item.date): {"currency": item.currency, "day": item.date, "rate": item.rate,
                                         "updated_at": now} for item in body}  # the last of a repeated day wins
    await repository.put_rates(session, list(rows.values()))
    return {"stored": len(rows), "reporting_currency": reporting}


@router.get("/fx-rates", response_model=FxRatePage)
async def list_fx_rates(
    session: ReadSession,
    page: RatePaging,
    currency: Annotated[Currency | None, Query(description="Only this currency's rates")] = None,
):
    """Loaded exchange rates, by currency, newest day first."""
    rows = await repository.list_rates(session, currency=currency, after=page.after, limit=page.fetch)
    reporting = fx.reporting_currency()
    return page.of(rows, lambda r: (r.currency, r.day), lambda row: FxRateOut.of(row, reporting))


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


@router.post(
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


@router.post("/transactions/{transaction_id}/void", response_model=TransactionOut)
async def void_transaction(transaction_id: str, body: VoidCreate, session: WriteSession):
    """Void a purchase recorded in error: out of purchase counts, summaries and scores; twice is 409."""
    return TransactionOut.of(await corrections.void(session=session, transaction_id=transaction_id, reason=body.reason))


@router.get("/transactions/{transaction_id}/refunds", response_model=RefundPage)
async def list_refunds(transaction_id: str, session: ReadSession, page: PagingByTime):
    """A purchase's refunds, oldest first."""
    transaction, rows = await corrections.refunds(
        session=session, transaction_id=transaction_id, after=page.after, limit=page.fetch
    )
    return page.of(rows, lambda r: (r.occurred_at, r.id), lambda row: _refund_out(row, transaction))
