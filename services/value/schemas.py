"""value's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from shared.db.database import utcnow
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, AsText, Id, Strict, stripped


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    if value <= utcnow():
        raise ValueError("must be in the future")
    return value


class OfferCreate(Strict):
    customer_id: Id
    kind: Annotated[str, Field(min_length=1, max_length=50, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    title: Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    discount_percent: Annotated[Decimal | None, Field(gt=0, le=100, decimal_places=2)] = None
    expires_at: Annotated[datetime | None, AsText, AfterValidator(_future)] = None


OfferStatus = Literal["issued", "redeemed", "expired"]


class OfferOut(BaseModel):
    id: str
    customer_id: str
    kind: str
    title: str
    discount_percent: str | None
    status: OfferStatus
    issued_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    # Offers from a template (POST /v1/offer-templates/{id}/offers); coupon codes on every offer issued now.
    template_id: str | None = None
    coupon_code: str | None = None
    amount_off: str | None = None
    currency: str | None = None
    free_item: str | None = None
    points: int | None = None
    cost: str | None = None
    starts_at: datetime | None = None
    segment: str | None = None
    campaign_id: str | None = None
    playbook_id: str | None = None
    redeemed_transaction_id: str | None = None


class OfferPage(Page[OfferOut]):
    pass


class RedeemRequest(Strict):
    # The purchase (identify's transaction id) the redemption applied to.
    transaction_id: Annotated[Id | None, Field(max_length=36)] = None
    # The coupon code the customer showed: it must be this offer's.
    code: Annotated[str | None, Field(min_length=1, max_length=40)] = None
