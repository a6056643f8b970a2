"""Next best offer's answer: every factor of each ranked offer, and what was left out and why."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class OrderValue(BaseModel):
    amount: str
    # identify_expected_spend: identify's Gamma-Gamma expected spend per purchase;
    # average_purchase: the customer's own average purchase, when identify has not scored it.
    source: Literal["identify_expected_spend", "average_purchase"]


class RankedOffer(BaseModel):
    template_id: str
    title: str
    kind: str
    # The Beta–Binomial posterior mean and its 95% credible interval.
    response_probability: float
    response_interval: tuple[float, float]
    redeemed_in_segment: int
    issued_in_segment: int
    # The prior's mean (the template's rate over every segment, shrunk towards the default) and weight.
    prior_rate: float
    prior_strength: float
    expected_order_value: str | None
    cost: str
    # response_probability × expected_order_value − cost; null without an order value (ranked last).
    expected_value: str | None


class LeftOut(BaseModel):
    template_id: str
    title: str
    reason: Literal["no_consent", "expired", "budget_exhausted", "held", "customer_cap"]


class NextBestOffer(BaseModel):
    customer_id: str
    segment: str | None
    channel: str | None
    consented_channels: list[str]
    expected_order_value: OrderValue | None
    offers: list[RankedOffer]
    excluded: list[LeftOut]
    note: str | None = None
