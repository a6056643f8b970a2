"""Referral rewards: one row per referral network rewarded, so each is issued once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class ReferralReward(Base):
    """What value did with a crm.network.referral.rewarded: the offer it issued the referrer,
    or why it issued none (the template unknown or closed, its budget or the referrer's cap reached)."""

    __tablename__ = "referral_rewards"
    __table_args__ = (
        Index("ix_referral_rewards_customer", "customer_id"),
        {"info": about_customers("the rewards the customer earned by referring others")},
    )

    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))  # the referrer
    offer_id: Mapped[str | None] = mapped_column(String(36))
    # issued | unknown_template | template_expired | budget_exhausted | customer_cap
    outcome: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
