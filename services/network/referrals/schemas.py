"""The referral programme's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from shared.http.pagination import Page
from shared.http.validation import Id, Strict

ReferralStatus = Literal["pending", "qualified", "rewarded", "void"]


class RewardOut(BaseModel):
    template_id: str | None = Field(None, description="The offer template value issues the referrer an offer of")
    points: int | None = Field(None, description="Or the loyalty points the referrer is credited")


class ReferralOut(BaseModel):
    id: str
    referrer_id: str = Field(description="The customer who referred")
    referred_id: str = Field(description="The customer who was referred")
    recorded_at: datetime = Field(description="When network recorded the referral")
    status: ReferralStatus = Field(
        description="pending: signed up, no purchase yet; qualified: a first purchase within the window; "
        "rewarded: the referrer's reward was announced (value issues it); void: see void_reason"
    )
    qualifies_until: datetime | None = Field(
        None, description="The end of the window a first purchase must fall in (signup plus the window)"
    )
    qualified_at: datetime | None = None
    transaction_id: str | None = Field(None, description="identify's id of the referred customer's first purchase")
    rewarded_at: datetime | None = None
    reward: RewardOut | None = Field(None, description="The reward announced, once rewarded")
    voided_at: datetime | None = None
    void_reason: str | None = Field(
        None,
        description="window_passed (the first purchase came after the window), self_referral (a merge made "
        "referrer and referred one customer), already_referred (a merge joined two referred customers: one "
        "referral stands)",
    )


class ReferralPage(Page[ReferralOut]):
    pass


class ProgrammeOut(BaseModel):
    window_days: int = Field(
        description="A referral counts when the referred customer's first purchase falls "
        "within this many days of their signup"
    )
    reward_template_id: str | None = Field(None, description="The referrer's reward: an offer of this template")
    reward_points: int | None = Field(None, description="… or this many loyalty points")
    updated_at: datetime | None = Field(None, description="Null while the settings' defaults hold")


class ProgrammeUpdate(Strict):
    window_days: int = Field(ge=1, le=3650)
    reward_template_id: Id | None = None
    reward_points: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_reward(self):
        if self.reward_template_id is not None and self.reward_points is not None:
            raise ValueError("give at most one of reward_template_id and reward_points")
        return self
