"""Bodies of the money API (exchange rates), and amounts as the whole API reads and writes them."""

from __future__ import annotations

from datetime import date as Day  # the type, where a field is called `date`
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, overload

from pydantic import AfterValidator, BaseModel, Field

from services.identify.settings import bounded_date
from shared.http.pagination import Page
from shared.http.validation import AsText, Currency, Strict


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    exponent = value.as_tuple().exponent  # an int: the value is finite
    if isinstance(exponent, int) and exponent < -4:
        raise ValueError("at most 4 decimal places")
    if abs(value) >= Decimal("1e14"):
        raise ValueError("too large")
    return value


def _finite_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else _finite(value)


@overload
def decimal_text(value: None) -> None: ...
@overload
def decimal_text(value: Decimal) -> str: ...
@overload
def decimal_text(value: Decimal | None) -> str | None: ...
def decimal_text(value: object) -> str | None:
    """A stored amount as the API writes it: plain notation, no trailing zeros."""

    if value is None:
        return None
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def _not_negative(value: Decimal | None) -> Decimal | None:
    if value is not None and value < 0:
        raise ValueError("must not be negative (a refund is POST /v1/transactions/{id}/refund)")
    return value


Money = Annotated[Decimal, AfterValidator(_finite), AfterValidator(_not_negative)]
OptionalMoney = Annotated[Decimal | None, AfterValidator(_finite_or_none), AfterValidator(_not_negative)]


MAX_RATE = Decimal("1e9")
MAX_RATES = 5000


def _rate(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a positive number")
    if value >= MAX_RATE:
        raise ValueError(f"must be below {MAX_RATE:f}")
    exponent = value.as_tuple().exponent  # an int: the value is finite
    if isinstance(exponent, int) and exponent < -10:
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
    def of(cls, row: Any, reporting_currency: str) -> FxRateOut:
        return cls(
            currency=row.currency,
            date=row.day,
            rate=decimal_text(row.rate),
            reporting_currency=reporting_currency,
            updated_at=row.updated_at,
        )


class FxRatePage(Page[FxRateOut]):
    pass


class FxRatesStored(BaseModel):
    stored: int = Field(description="Rates inserted or replaced")
    reporting_currency: str
