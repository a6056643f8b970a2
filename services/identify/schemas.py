"""identify's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.validation import Email, Strict, Text, stripped

Phone = Annotated[str | None, Field(max_length=50), AfterValidator(stripped)]


class CustomerCreate(Strict):
    email: Email = None
    external_id: Text = None
    name: Text = None
    phone: Phone = None
    referred_by: str | None = None

    @model_validator(mode="after")
    def _identified(self):
        if not self.email and not self.external_id:
            raise ValueError("give at least one of email and external_id")
        return self


class CustomerPatch(Strict):
    email: Email = None
    external_id: Text = None
    name: Text = None
    phone: Phone = None


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str | None
    external_id: str | None
    name: str | None
    phone: str | None
    referred_by: str | None
    purchase_count: int
    created_at: datetime
    updated_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None = None


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.as_tuple().exponent < -4:
        raise ValueError("at most 4 decimal places")
    if abs(value) >= Decimal("1e14"):
        raise ValueError("too large")
    return value


class TransactionCreate(Strict):
    customer_id: str
    amount: Annotated[Decimal, AfterValidator(_finite)] = Field(
        description="Decimal amount as a string or number; negative for a refund"
    )
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), AfterValidator(str.upper)]
    occurred_at: datetime
    external_id: Text = None

    @model_validator(mode="after")
    def _aware(self):
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (e.g. 2024-05-01T10:00:00Z)")
        return self


class TransactionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    amount: str
    currency: str
    occurred_at: datetime
    external_id: str | None
    recorded_at: datetime

    @classmethod
    def of(cls, row) -> "TransactionOut":
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            amount=format(row.amount.normalize(), "f") if isinstance(row.amount, Decimal) else str(row.amount),
            currency=row.currency,
            occurred_at=row.occurred_at,
            external_id=row.external_id,
            recorded_at=row.recorded_at,
        )


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None = None
