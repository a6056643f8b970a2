"""identify's request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.identify.portfolio.schemas import ScoresOut
from services.identify.portfolio.settings import bounded_instant
from shared.pagination import Page
from shared.validation import NOT_BLANK_SCHEMA, AsText, Currency, Email, Id, Strict, Text, stripped

Phone = Annotated[str | None, Field(max_length=50, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


class CustomerCreate(Strict):
    # `_identified` below, stated in the schema too, so clients and fuzzers see it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}} for name in ("email", "external_id")
            ]
        }
    )

    email: Email = None
    external_id: Text = None
    name: Text = None
    phone: Phone = None
    referred_by: Id | None = None

    @model_validator(mode="after")
    def _identified(self):
        if not self.email and not self.external_id:
            raise ValueError("give at least one of email and external_id")
        return self


class CustomerPatch(Strict):
    # Not both set to null at once (updates that would leave neither, given what is stored, are 409).
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["email", "external_id"],
                "properties": {"email": {"type": "null"}, "external_id": {"type": "null"}},
            }
        }
    )

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
    phone_e164: str | None = Field(
        None, validation_alias="phone_key", description="The phone in E.164, null when it is not a valid number"
    )
    referred_by: str | None
    purchase_count: int
    merged_into: str | None = Field(
        None, description="Set when this customer was merged: the survivor that now holds its data"
    )
    merged_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    scores: ScoresOut | None = Field(
        None, description="RFM scores and segment, lifetime value, probability alive and strategically "
        "significant kinds with their evidence; null until the first refit has scored the customer"
    )


class CustomerPage(Page[CustomerOut]):
    pass


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.as_tuple().exponent < -4:
        raise ValueError("at most 4 decimal places")
    if abs(value) >= Decimal("1e14"):
        raise ValueError("too large")
    return value


def _finite_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else _finite(value)


def decimal_text(value) -> str | None:
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
        None, description="The amount in the reporting currency, the one every sum of money uses "
        "(null only for a purchase recorded before exchange rates existed, in another currency)"
    )
    reporting_currency: str | None = None
    status: Literal["recorded", "voided"] = Field(
        "recorded", description="voided: recorded in error (POST /v1/transactions/{id}/void), out of counts and scores"
    )
    refunded_amount: str = Field(
        "0", description="What was refunded of it so far, in its currency; the refunds are listed at "
        "GET /v1/transactions/{id}/refunds"
    )
    voided_at: datetime | None = None
    void_reason: str | None = None

    @classmethod
    def of(cls, row) -> "TransactionOut":
        """From an ORM object or a row mapping (the bulk path works on mappings)."""
        get = row.get if isinstance(row, Mapping) else row.__getattribute__
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
