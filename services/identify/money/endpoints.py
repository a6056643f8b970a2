"""The money HTTP API: exchange rates into the reporting currency."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from services.identify.money import fx, repository
from services.identify.money.schemas import MAX_RATES, FxRateIn, FxRateOut, FxRatePage, FxRatesStored
from shared.db.database import utcnow
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import InvalidRequest
from shared.http.pagination import DAY, ID, PageParams, page_params
from shared.http.validation import Currency

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
        {
            "field": f"body.{index}.currency",
            "message": f"{reporting} is the reporting currency: it needs no rate",
            "type": "value_error",
        }
        for index, item in enumerate(body)
        if item.currency == reporting
    ]
    if errors:
        raise InvalidRequest(errors)
    now = utcnow()
    rows = {
        (item.currency, item.date): {"currency": item.currency, "day": item.date, "rate": item.rate, "updated_at": now}
        for item in body
    }  # the last of a repeated day wins
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
