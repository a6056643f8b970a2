"""Campaigns' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.value.offers.schemas import NotBoolean
from shared.events.contracts import MessageChannel, Stage
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, AsText, Id, Strict, stripped, stripped_text

CampaignStatus = Literal["draft", "scheduled", "launching", "running", "completed", "cancelled"]

_Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
_Word = Annotated[str, Field(min_length=1, max_length=50, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    return value


_When = Annotated[datetime | None, AsText, AfterValidator(_aware)]


_Number = Annotated[float, NotBoolean]


class Range(Strict):
    min: _Number | None = None
    max: _Number | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` must not be above `max`")
        return self


class Audience(Strict):
    """Who a campaign reaches, over value's own read models; every criterion given must hold.
    Consent to marketing on the campaign's channel is always required, and customers never to
    be marketed to (suppressed, erased) are never in it."""

    segments: Annotated[list[_Word], Field(default_factory=list, max_length=20)]
    kinds: Annotated[list[_Word], Field(default_factory=list, max_length=10)]
    stages: Annotated[list[Stage], Field(default_factory=list, max_length=7)]
    predicted_clv: Range | None = None
    probability_alive: Range | None = None
    last_purchase_after: _When = None
    last_purchase_before: _When = None


_HoldoutShare = Annotated[
    float, Field(ge=0, le=0.5, description="The share of the audience held out: 0 to 0.5"), NotBoolean
]
_Days = Annotated[int, Field(ge=1, le=365), NotBoolean]


class CampaignCreate(Strict):
    name: _Name
    channel: MessageChannel
    # The offer treatment customers get (an offer template's id).
    template_id: Annotated[Id, Field(min_length=1, max_length=36)]
    # What engage sends: its message template, or a subject and body; both may name
    # {{ offer_code }} and {{ offer_title }}.
    message_template_id: Annotated[Id | None, Field(min_length=1, max_length=36)] = None
    subject: _Name | None = None
    body: Annotated[
        str | None, Field(min_length=1, max_length=5000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
    ] = None
    audience: Annotated[Audience, Field(default_factory=Audience)]
    holdout_share: _HoldoutShare = 0.1
    attribution_days: _Days = 30

    @model_validator(mode="after")
    def _has_a_message(self) -> CampaignCreate:
        if self.message_template_id is None and (self.subject is None or self.body is None):
            raise ValueError("give `message_template_id`, or both `subject` and `body`")
        return self


class CampaignUpdate(Strict):
    """The fields to change; only a draft or scheduled campaign changes."""

    name: _Name | None = None
    audience: Audience | None = None
    holdout_share: _HoldoutShare | None = None
    attribution_days: _Days | None = None


class ScheduleRequest(Strict):
    scheduled_at: Annotated[datetime, AsText, AfterValidator(_aware)]


class CampaignOut(BaseModel):
    id: str
    name: str
    channel: str
    status: CampaignStatus
    template_id: str
    message_template_id: str | None
    subject: str | None
    body: str | None
    audience: Audience
    holdout_share: float
    attribution_days: int
    # The holdout assignment's seed: sha256(f"{seed}:{customer_id}") decides each customer's group.
    seed: str
    scheduled_at: datetime | None
    launched_at: datetime | None
    ended_at: datetime | None
    # Why the schedule could not launch it at its time (it went back to draft); null otherwise.
    launch_error: str | None = None
    treatment: int
    holdout: int
    created_at: datetime
    # Where the campaign may go from here.
    allowed_transitions: list[CampaignStatus]


class CampaignPage(Page[CampaignOut]):
    pass


class AudienceMember(BaseModel):
    customer_id: str
    segment: str | None
    stage: str | None
    predicted_clv: float | None


class Preview(BaseModel):
    count: int
    sample: list[AudienceMember]


class MemberOut(BaseModel):
    campaign_id: str
    customer_id: str
    group: Literal["treatment", "holdout"]
    offer_id: str | None
    promoted: str | None
    channel: str
    promoted_at: datetime
    # holdout | requested | sent | failed | bounced | refused | capped (the template's per-customer cap)
    outcome: str
    outcome_reason: str | None
    outcome_at: datetime | None


class MemberPage(Page[MemberOut]):
    pass


class EstimateOut(BaseModel):
    value: float | None
    low: float | None
    high: float | None


class GroupResults(BaseModel):
    customers: int
    converted: int
    conversion_rate: EstimateOut
    revenue: float
    revenue_per_customer: float | None
    redemptions: int


class Uplift(BaseModel):
    # Treatment minus holdout conversion rate (difference of proportions, 95% interval).
    conversion: EstimateOut
    # Treatment minus holdout revenue per customer (Welch interval, 95%).
    revenue_per_customer: EstimateOut


class Results(BaseModel):
    # The campaign's or playbook's id; a playbook has no status or fixed window here.
    id: str
    status: str | None
    window_from: datetime | None
    window_until: datetime | None
    treatment: GroupResults
    holdout: GroupResults
    uplift: Uplift
    # The uplift in revenue per customer times the treatment group's size.
    incremental_revenue: float | None
    # What the redeemed offers cost the business (the template's cost per offer).
    offer_cost: float
    net_incremental_revenue: float | None
