"""The loyalty programme's request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema, model_validator

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Id, Strict, stripped

TierBasis = Literal["points_12m", "clv"]


def _not_a_boolean(value: object) -> object:
    # Lax pydantic reads `true` as 1 for an integer or a number; the schema says a number.
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


NotBoolean = BeforeValidator(_not_a_boolean)
POINTS_PATTERN = r"^[0-9]{1,5}(\.[0-9]{1,4})?$"


def _text(value: object) -> object:
    if not isinstance(value, str) or not re.fullmatch(POINTS_PATTERN, value):
        raise ValueError('a decimal as text, e.g. "1" or "0.5" (at most 4 decimal places)')
    return value


class Tier(Strict):
    name: Annotated[str, Field(min_length=1, max_length=40, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    # Points over the last 12 months (points_12m) or predicted CLV in the reporting currency (clv).
    threshold: Annotated[float, Field(ge=0, le=1e12), NotBoolean]


class ProgrammeIn(Strict):
    # A decimal as text ("1", "0.5", "2.25"): at most 4 places, below 100000.
    points_per_unit: Annotated[
        Decimal,
        BeforeValidator(_text),
        Field(ge=0, max_digits=9, decimal_places=4),
        WithJsonSchema({"type": "string", "pattern": POINTS_PATTERN, "examples": ["1", "0.5"]}),
    ]
    expiry_months: Annotated[int | None, Field(ge=1, le=120), NotBoolean] = None
    tier_basis: TierBasis = "points_12m"
    tiers: Annotated[list[Tier], Field(max_length=10, default_factory=list)]

    @model_validator(mode="after")
    def _rising(self) -> ProgrammeIn:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must differ")
        thresholds = [tier.threshold for tier in self.tiers]
        if any(b <= a for a, b in pairwise(thresholds)):
            raise ValueError("tier thresholds must rise from one tier to the next")
        return self


class TierOut(BaseModel):
    name: str
    threshold: float
    members: int | None = Field(
        None,
        description="Customers in the tier as the last judgement left them (GET only; a PUT's new "
        "thresholds count after the next sweep)",
    )


class ProgrammeOut(BaseModel):
    version: int
    points_per_unit: str
    expiry_months: int | None
    tier_basis: TierBasis
    tiers: list[TierOut]
    updated_at: datetime | None


class EntryOut(BaseModel):
    entry_id: str
    kind: str
    points: int
    balance: int
    at: datetime
    source_id: str | None
    expires_at: datetime | None


class LoyaltyOut(Page[EntryOut]):
    customer_id: str
    balance: int
    tier: str | None
    tier_since: datetime | None
    tier_basis: TierBasis
    # What the tier is judged by: points over the last 12 months (points_12m), or null (clv).
    points_last_12_months: int | None


class RedemptionIn(Strict):
    template_id: Annotated[Id, Field(min_length=1, max_length=36)]


class RedemptionOut(BaseModel):
    redemption_id: str
    customer_id: str
    template_id: str
    points: int
    status: Literal["pending", "issued", "refused"]
    balance: int
    created_at: datetime


class SweepOut(BaseModel):
    expired_entries: int
    tier_changes: int
