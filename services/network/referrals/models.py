"""The referral programme's tables: who referred whom, how far each referral got, and the
programme's terms (docs/network.md "The referral programme")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.network.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class Referral(Base):
    """`referrer_id` brought in `referred_id`.

    A customer is referred at most once while the referral stands: a void referral keeps
    the ids it was voided with (the history of why), the live one is unique per referred
    customer (the partial uniqueness is the service's: `follow_merge` keeps one).

    status: pending (signed up, no purchase yet) → qualified (a first purchase within the
    programme's window) → rewarded (the referrer's reward announced), or void (with
    `void_reason`: a purchase only after the window, or a merge that made the referral a
    self-referral or a second referral of one person).
    """

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_referrer_id", "referrer_id", "id"),
        Index("ix_referrals_referred_id", "referred_id"),
        Index("ix_referrals_status_id", "status", "id"),
        {"info": about_customers("who referred whom: referral rewards and benchmark evidence", column="referrer_id")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(36))
    referred_id: Mapped[str] = mapped_column(String(36))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the referred customer signed up: the programme's window runs from here.
    signed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    # The window (days) the referral was recorded under: a later change of the programme
    # does not move the goalposts of referrals already made.
    window_days: Mapped[int | None] = mapped_column(Integer)
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # identify's id of the first purchase (the one that qualified it, or came too late).
    transaction_id: Mapped[str | None] = mapped_column(String(36))
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reward_template_id: Mapped[str | None] = mapped_column(String(36))
    reward_points: Mapped[int | None] = mapped_column(Integer)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # window_passed | self_referral | already_referred
    void_reason: Mapped[str | None] = mapped_column(String(40))


class ReferralProgramme(Base):
    """The programme's terms, one row (id 1); none until the first PUT (the settings' defaults hold)."""

    __tablename__ = "referral_programme"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_days: Mapped[int] = mapped_column(Integer)
    # The reward: an offer of value's template, or loyalty points, or neither (no reward).
    reward_template_id: Mapped[str | None] = mapped_column(String(36))
    reward_points: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
