"""The transactions API's bodies: purchases recorded one by one or in batches, their refunds and voids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.identify.money.schemas import Money, OptionalMoney, decimal_text
from services.identify.settings import bounded_instant
from shared.http.pagination import Page
from shared.http.validation import AsText, Currency, Id, Strict, Text, stripped


class TransactionCreate(Strict):
    customer_id: Id
    amount: Money = Field(
        description="Decimal amount as a string or number, 0 or more; a refund is recorded with "
        "POST /v1/transactions/{id}/refund"
    )
    currency: Currency = Field(description="ISO 4217 code (upper or lower case)")
    occurred_at: Annotated[datetime, AsText, AfterValidator(bounded_instant)]
    external_id: Text = None
    margin: OptionalMoney = Field(
        None, description="Optional margin earned on the sale (same currency), 0 up to the amount"
    )
    cost: OptionalMoney = Field(None, description="Optional cost of serving the sale (same currency), 0 or more")

    @field_validator("margin")
    @classmethod
    def _margin_within_amount(cls, margin: Decimal | None, info: ValidationInfo) -> Decimal | None:
        amount = info.data.get("amount")
        if margin is not None and amount is not None and margin > amount:
            raise ValueError(f"must not be larger than the amount ({decimal_text(amount)})")
        return margin

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
    margin: str | None = None
    cost: str | None = None
    recorded_at: datetime
    reporting_amount: str | None = Field(
        None,
        description="The amount in the reporting currency, the one every sum of money uses "
        "(null only for a purchase recorded before exchange rates existed, in another currency)",
    )
    reporting_currency: str | None = None
    status: Literal["recorded", "voided"] = Field(
        "recorded", description="voided: recorded in error (POST /v1/transactions/{id}/void), out of counts and scores"
    )
    refunded_amount: str = Field(
        "0",
        description="What was refunded of it so far, in its currency; the refunds are listed at "
        "GET /v1/transactions/{id}/refunds",
    )
    voided_at: datetime | None = None
    void_reason: str | None = None

    @classmethod
    def of(cls, row: Any) -> TransactionOut:
        """From an ORM object or a row mapping (the bulk path works on mappings)."""
        get: Callable[[str], Any] = row.get if isinstance(row, Mapping) else row.__getattribute__
        return cls(
            id=get("id"),
            customer_id=get("customer_id"),
            amount=decimal_text(get("amount")),
            currency=get("currency"),
            occurred_at=get("occurred_at"),
            external_id=get("external_id"),
            margin=decimal_text(get("margin")),
            cost=decimal_text(get("cost")),
            recorded_at=get("recorded_at"),
            reporting_amount=decimal_text(get("reporting_amount")),
            reporting_currency=get("reporting_currency"),
            status=get("status") or "recorded",
            refunded_amount=decimal_text(get("refunded_amount") or Decimal(0)),
            voided_at=get("voided_at"),
            void_reason=get("void_reason"),
        )


class TransactionPage(Page[TransactionOut]):
    pass


class TransactionBatch(Strict):
    # Items are validated one by one (a bad item fails alone), so they arrive untyped.
    items: list[Any] = Field(min_length=1, max_length=1000, description="1 to 1,000 TransactionCreate bodies")


class ItemError(BaseModel):
    error: str
    detail: Any


class BatchItemOut(BaseModel):
    index: int
    status: Literal["created", "duplicate", "error"]
    transaction: TransactionOut | None = None
    error: ItemError | None = None


class BatchOut(BaseModel):
    items: list[BatchItemOut]
    created: int
    duplicates: int
    errors: int


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


Reason = Annotated[str, Field(max_length=500), AfterValidator(stripped)]


class RefundCreate(Strict):
    amount: Annotated[Money, AfterValidator(_positive)] = Field(
        description="How much is given back, in the purchase's currency: more than 0 and at most what is left"
        " unrefunded"
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


class RefundPage(Page[RefundOut]):
    pass


class RefundRecorded(RefundOut):
    transaction: TransactionOut = Field(description="The purchase after the refund")
