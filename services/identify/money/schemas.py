"""Bodies of the money API: exchange rates, refunds and voids."""

from __future__ import annotations

from datetime import datetime
from datetime import date as Day  # the type, where a field is called `date`
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.identify.portfolio.settings import bounded_date
from services.identify.schemas import Money, TransactionOut, decimal_text
from shared.validation import AsText, Currency, Strict, Text, stripped

MAX_RATE = Decimal("1e9")
MAX_RATES = 5000


def _rate(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a positive number")
    if value >= MAX_RATE:
        raise ValueError(f"must be below {MAX_RATE:f}")
    if value.as_tuple().exponent < -10:
        raise ValueError("at most 10 decimal places")
    return value


class FxRateIn(Strict):
    currency: Currency = Field(description="ISO 4217 code of the currency converted from (not the reporting currency)")
    date: Annotated[Day, AsText, AfterValidator(bounded_date)] = Field(
        description="First UTC day the rate holds; it holds until the currency's next rate; within the date bounds "
        "(by default from 1970-01-01 to tomorrow)"
    )
    rate: Annotated[Decimal, AfterValidator(_rate)] = Field(
        description="1 unit of `currency` = `rate` units of the reporting currency (positive, up to 10 decimal places)"
    )


class FxRateOut(BaseModel):
    currency: str
    date: Day
    rate: str
    reporting_currency: str
    updated_at: datetime

    @classmethod
    def of(cls, row, reporting_currency: str) -> "FxRateOut":
        return cls(currency=row.currency, date=row.day, rate=decimal_text(row.rate),
                   reporting_currency=reporting_currency, updated_at=row.updated_at)


class FxRatePage(BaseModel):
    items: list[FxRateOut]
    next_cursor: str | None = None


class FxRatesStored(BaseModel):
    stored: int = Field(description="Rates inserted or replaced")
    reporting_currency: str


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


Reason = Annotated[str, Field(max_length=500), AfterValidator(stripped)]


class RefundCreate(Strict):
    amount: Annotated[Money, AfterValidator(_positive)] = Field(
        description="How much is given back, in the purchase's currency: more than 0 and at most what is left unrefunded"
    )
    reason: Reason = Field(description="Why the money was given back")
    occurred_at: Annotated[datetime | None, AsText] = Field(
        None, description="When it was given back (default now); not before the purchase"
    )
    external_id: Text = Field(None, description="Idempotency key: the same key again returns the first refund")


class VoidCreate(Strict):
    reason: Reason = Field(description="Why the purchase was recorded in error")


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    transaction_id: str
    amount: str
    currency: str
    reporting_amount: str | None
    reporting_currency: str | None
    reason: str
    occurred_at: datetime
    external_id: str | None
    recorded_at: datetime


class RefundPage(BaseModel):
    items: list[RefundOut]
    next_cursor: str | None = None


class RefundRecorded(RefundOut):
    transaction: TransactionOut = Field(description="The purchase after the refund")
