"""Offer templates' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, AsText, Currency, Id, Strict, stripped


def _not_a_boolean(value: object) -> object:
    # Lax pydantic reads `true` as 1 for an integer or a number; the schema says a number.
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


# A JSON number (216.0 is the integer 216), never a boolean.
NotBoolean = BeforeValidator(_not_a_boolean)

TemplateKind = Literal["percent_off", "amount_off", "free_item", "points"]

_Title = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    return value


_When = Annotated[datetime | None, AsText, AfterValidator(_aware)]


class Money(Strict):
    amount: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    currency: Currency


class OfferTemplateCreate(Strict):
    kind: TemplateKind
    title: _Title
    # percent_off: the percentage; amount_off: the money; free_item: what; points: how many.
    percent_off: Annotated[Decimal | None, Field(gt=0, le=100, decimal_places=2)] = None
    amount_off: Money | None = None
    free_item: Annotated[
        str | None, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)
    ] = None
    points: Annotated[int | None, Field(gt=0, le=10_000_000), NotBoolean] = None
    # Any kind may also be sold for loyalty points: POST /v1/customers/{id}/loyalty/redemptions.
    points_price: Annotated[int | None, Field(gt=0, le=10_000_000), NotBoolean] = None
    valid_from: _When = None
    valid_until: _When = None
    valid_days: Annotated[int | None, Field(gt=0, le=3650), NotBoolean] = None
    budget: Annotated[int | None, Field(gt=0), NotBoolean] = None
    per_customer_cap: Annotated[int | None, Field(gt=0), NotBoolean] = None
    # What one offer costs the business, in the reporting currency.
    cost: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)] = Decimal(0)

    @model_validator(mode="after")
    def _fits_its_kind(self) -> OfferTemplateCreate:
        needs = {"percent_off": "percent_off", "amount_off": "amount_off", "free_item": "free_item", "points": "points"}
        for kind, field in needs.items():
            given = getattr(self, field) is not None
            if kind == self.kind and not given:
                raise ValueError(f"a {kind} template needs `{field}`")
            if kind != self.kind and given:
                raise ValueError(f"`{field}` belongs to {kind} templates, not {self.kind}")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("`valid_until` must be after `valid_from`")
        return self


class TemplateMoney(BaseModel):
    amount: str
    currency: str


class OfferTemplateOut(BaseModel):
    id: str
    kind: TemplateKind
    title: str
    percent_off: str | None
    amount_off: TemplateMoney | None
    free_item: str | None
    points: int | None
    points_price: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    budget: int | None
    per_customer_cap: int | None
    cost: str
    issued: int
    created_at: datetime


class OfferTemplatePage(Page[OfferTemplateOut]):
    pass


class IssueRequest(Strict):
    customer_id: Annotated[Id, Field(min_length=1, max_length=36)]
