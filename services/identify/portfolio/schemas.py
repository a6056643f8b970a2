"""Portfolio request and response bodies (the contract other teams' frontends use)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.identify.settings import bounded_date
from shared.http.pagination import Page
from shared.http.validation import AsText, Strict

TimeUnit = Literal["day", "week"]
Kind = Literal["high_future_value", "benchmark", "inspiration", "cost_absorber"]
Money = Annotated[Decimal, Field(ge=0, le=Decimal("1e12"), decimal_places=4)]


class RefitRequest(Strict):
    calibration_end: Annotated[date | None, AsText, AfterValidator(bounded_date)] = Field(
        None,
        description="Fit on purchases up to this day (inclusive); null = all; "
        "within the date bounds (by default from 1970-01-01 to tomorrow)",
    )
    time_unit: TimeUnit = "week"


class RefitAccepted(BaseModel):
    id: str
    status: str
    joined: bool = Field(
        description="true when a refit with the same parameters was already queued: this request joined "
        "it and `id` is that refit's (at most one refit waits; 409 `refit_queued` when the "
        "queued one has other parameters)"
    )


class RefitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: Literal["queued", "running", "done", "failed"]
    time_unit: TimeUnit
    calibration_end: date | None
    model_version: int | None
    customers_scored: int
    failure: str | None
    requested_at: datetime
    finished_at: datetime | None


class RefitPage(Page[RefitOut]):
    pass


class BGNBDOut(BaseModel):
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


class ParetoNBDOut(BaseModel):
    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float


class GammaGammaOut(BaseModel):
    p: float
    q: float
    gamma: float


class ModelOut(BaseModel):
    version: int
    time_unit: TimeUnit
    calibration_end: date | None
    fitted_at: datetime
    as_of: date = Field(description="Scores are as of this day: the last day with a purchase at the refit")
    customers: int = Field(description="Customers the model was fitted on")
    bgnbd: BGNBDOut
    pareto_nbd: ParetoNBDOut | None = Field(
        description="null when the Pareto/NBD fit found no optimum (see pareto_nbd_error); scores use BG/NBD"
    )
    pareto_nbd_error: str | None = None
    gamma_gamma: GammaGammaOut
    discount_rate: float
    clv_horizon_days: int
    thresholds: dict[str, float]


class SegmentOut(BaseModel):
    segment: str
    customers: int
    revenue: float
    historic_clv: float
    predicted_clv: float


COMPUTED_AT = (
    "When these numbers were computed: the refit that stored them (its model's `fitted_at`); "
    "null when computed for this request from the current data"
)


class SegmentsOut(BaseModel):
    model_version: int | None
    customers: int
    segments: list[SegmentOut]
    kinds: dict[str, int] = Field(
        description="Customers holding each strategically significant kind "
        "(GET /v1/portfolio/significant?kind= lists them)"
    )
    computed_at: datetime | None = Field(description=COMPUTED_AT)


class ShareOut(BaseModel):
    top: float
    customers: int
    revenue_share: float
    profit_share: float


class ParetoOut(BaseModel):
    customers: int
    revenue: float
    profit: float
    shares: list[ShareOut]
    gini: float = Field(description="Gini coefficient of revenue per customer")
    profit_gini: float
    lorenz: list[tuple[float, float]] = Field(description="[share of customers, share of revenue], smallest first")
    model_version: int | None = Field(
        description="The refit (model version) that stored these numbers; null when computed for this request"
    )
    computed_at: datetime | None = Field(description=COMPUTED_AT)


class SignificantOut(BaseModel):
    customer_id: str
    kind: Kind
    evidence: dict


class _OfKind(BaseModel):
    # Named after Page among SignificantPage's bases, so pydantic puts `kind` first, where the
    # schema and the answer always had it.
    kind: Kind | None


class SignificantPage(Page[SignificantOut], _OfKind):
    note: str | None = None


class CostsIn(Strict):
    acquisition: Money = Decimal(0)
    selling: Money = Decimal(0)
    service: Money = Decimal(0)


class CostsOut(BaseModel):
    customer_id: str
    acquisition: str
    selling: str
    service: str
    service_tickets: str = Field(
        description="What serving the customer on lifecycle's tickets cost (crm.lifecycle.service_cost.recorded), "
        "undiscounted; CLV subtracts each cost compounded from when it was recorded"
    )
    updated_at: datetime | None
