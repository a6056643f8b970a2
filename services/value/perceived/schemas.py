"""The value map's request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from services.value.perceived.models import NAME_MAX
from shared.db.database import utcnow
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, AsText, Id, Strict, stripped

# A bulk entry is at most this many ratings: one transaction, one answer.
BATCH_MAX = 1000

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
# Strict: JSON types as the schema says them (no "7" for 7, no 0 for false).
Weight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False, strict=True)]
PriceMark = Annotated[
    bool, Field(strict=True, description="The price attribute (at most one): the map's perceived price")
]
Score = Annotated[
    int, Field(ge=1, le=10, strict=True, description="1 (worst) to 10 (best); on price, 10 is a good price")
]


def _not_future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-05-01T10:00:00Z)")
    if value > utcnow():
        raise ValueError("must not be in the future")
    return value


# --- attributes and competitors ------------------------------------------------------


class AttributeCreate(Strict):
    name: Name
    weight: Weight
    price: PriceMark = False


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class AttributeUpdate(Strict):
    # Each may be left out (kept as it is) but not null: the schema says so (SkipJsonSchema
    # hides the None the default needs), and the service answers an explicit null 422.
    name: Name | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    weight: Weight | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    price: PriceMark | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)


class AttributeOut(BaseModel):
    id: str
    name: str
    weight: float
    price: bool
    created_at: datetime
    updated_at: datetime


class AttributePage(Page[AttributeOut]):
    pass


class CompetitorCreate(Strict):
    name: Name


class CompetitorUpdate(Strict):
    name: Name


class CompetitorOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


class CompetitorPage(Page[CompetitorOut]):
    pass


# --- ratings -----------------------------------------------------------------------------


class RatingIn(Strict):
    customer_id: Id
    attribute: Name
    subject: Annotated[Name, Field(description="`us` or a competitor's name")]
    score: Score
    rated_at: Annotated[
        datetime | None, AsText, AfterValidator(_not_future), Field(description="When it was rated (default: now)")
    ] = None
    segment: Annotated[
        str | None, Field(description="The customer's RFM segment then (default: the one value knows now)")
    ] = None


class RatingBatch(Strict):
    ratings: Annotated[list[RatingIn], Field(min_length=1, max_length=BATCH_MAX)]


class RatingBatchOut(BaseModel):
    recorded: int


class RatingOut(BaseModel):
    id: str
    customer_id: str
    attribute: str
    subject: str
    score: int
    segment: str | None
    rated_at: datetime
    source: Literal["survey", "entered"] | str


class RatingPage(Page[RatingOut]):
    pass


# --- the map -------------------------------------------------------------------------------


class Metric(BaseModel):
    value: float | None = Field(description="null when there are no ratings behind it")
    ratings: int = Field(description="How many ratings it is computed from")


class AttributeScore(BaseModel):
    attribute: str
    mean_score: float | None
    ratings: int


class Figures(BaseModel):
    perceived_quality: Metric
    price_score: Metric
    perceived_price: Metric
    perceived_worth: Metric
    value_added_ratio: Metric


class MonthFigures(Figures):
    month: str


class SubjectValue(Figures):
    subject: str
    competitor_id: str | None
    attributes: list[AttributeScore]
    fair_value_quality: float | None
    value_position: float | None
    trend: list[MonthFigures]


class WeightOut(BaseModel):
    attribute: str
    price: bool
    weight: float
    share: float


class FairValueLine(BaseModel):
    method: Literal["least_squares"]
    intercept: float | None
    slope: float | None
    points: int


class UnmappedName(BaseModel):
    kind: Literal["attribute", "subject"]
    name: str
    ratings: int


class Unmapped(BaseModel):
    ratings: int
    unknown_attribute: int
    unknown_subject: int
    score_out_of_range: int
    names: list[UnmappedName] = Field(description="The most frequent names value could not map (up to 20)")


class ValueMapOut(BaseModel):
    segment: str | None
    from_: date | None = Field(serialization_alias="from")
    to: date | None
    ratings: int = Field(description="The ratings the map is computed from (mapped, in the window and segment)")
    weights: list[WeightOut]
    subjects: list[SubjectValue]
    fair_value_line: FairValueLine
    unmapped: Unmapped
