"""Retention analytics' response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CohortBy = Literal["month"]


class CohortMonth(BaseModel):
    k: int = Field(description="Months since the cohort's first (0 is the cohort's own month)")
    month: str = Field(description="The calendar month, YYYY-MM (UTC)")
    customers: int = Field(description="The cohort's customers who bought in this month")
    share: float = Field(description="customers / the cohort's size")


class Cohort(BaseModel):
    cohort: str = Field(description="The month of the customers' first purchase, YYYY-MM (UTC)")
    size: int = Field(description="How many customers first bought in it")
    months: list[CohortMonth] = Field(description="k = 0, 1, … up to the last month any listed customer bought in")


class CohortMatrix(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    by: CohortBy
    from_: str | None = Field(alias="from", description="The first cohort asked for")
    to: str | None = Field(description="The last cohort asked for")
    cohorts: list[Cohort] = Field(description="The cohorts with customers, oldest first")


class SurvivalPoint(BaseModel):
    t_days: int = Field(description="Whole days since the first purchase")
    survival: float = Field(description="The estimated share not yet churned just after t")
    at_risk: int = Field(description="Customers neither churned nor censored before t")
    events: int = Field(description="Customers who churned at t")
    censored: int = Field(description="Customers observed until t (the as-of date) without churning")
    lower: float = Field(description="The confidence interval's lower end (Greenwood, log-log)")
    upper: float = Field(description="Its upper end")


class Survival(BaseModel):
    as_of: datetime
    customers: int = Field(description="Customers with a first purchase at or before as_of")
    churned: int
    censored: int
    median_days: int | None = Field(description="The first t with survival at or below 0.5; null while above")
    confidence: float
    points: list[SurvivalPoint] = Field(description="One per distinct t with a churn or a censoring")


class FunnelStage(BaseModel):
    stage: str
    entered: int = Field(description="Transitions into the stage in the window")
    customers: int = Field(description="Distinct customers among them")
    in_stage: int = Field(description="Customers in the stage at `to` (their latest transition before it)")


class FunnelMove(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    moved: int = Field(description="Entries into `from` in the window whose next transition, also in it, was to `to`")
    conversion: float = Field(description="moved / entries into `from` in the window")
    median_days: float = Field(description="The median time in `from` before moving on, in days")


class Funnel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime | None = Field(alias="from")
    to: datetime
    stages: list[FunnelStage] = Field(description="Every stage, in the lifecycle's order")
    moves: list[FunnelMove]
