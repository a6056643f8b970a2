"""network's request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.http.pagination import Page


class ReferralOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    referred_id: str = Field(description="The customer who was referred")
    recorded_at: datetime = Field(description="When network recorded the referral")


class ReferralPage(Page[ReferralOut]):
    pass
