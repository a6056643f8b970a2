"""Campaigns, their members (treatment or holdout, with what was promoted and how the
delivery went), and the read models audiences and results are computed from: marketing
consent per channel (engage's consent events) and purchases (identify's transaction events)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, Float, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status", "status", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    # draft | scheduled | running | completed | cancelled
    status: Mapped[str] = mapped_column(String(20))
    template_id: Mapped[str] = mapped_column(String(36))
    # The message engage sends: its template, or a subject and body (staff-written, for everyone).
    message_template_id: Mapped[str | None] = mapped_column(String(36))
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(String(5000))
    # The audience criteria, as the API takes them (schemas.Audience).
    audience: Mapped[dict] = mapped_column(JSON)
    holdout_share: Mapped[float] = mapped_column(Float)
    # Purchases within this many days of launch count for the results.
    attribution_days: Mapped[int] = mapped_column(Integer)
    # sha256(f"{seed}:{customer_id}") below the holdout share: holdout (decisions.md).
    seed: Mapped[str] = mapped_column(String(64))
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why the schedule could not launch it at its time (it went back to draft): a 409's detail.
    launch_error: Mapped[str | None] = mapped_column(String(500))
    treatment: Mapped[int] = mapped_column(Integer, default=0)
    holdout: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignMember(Base):
    """One customer of a launched campaign: its group, and for treatment what was promoted,
    when, on which channel, and how the delivery went."""

    __tablename__ = "campaign_members"
    __table_args__ = (
        Index("ix_campaign_members_customer", "customer_id", "promoted_at"),
        Index("ix_campaign_members_request", "request_id"),
        {"info": about_customers("the campaigns the customer was in: group, offer promoted, delivery outcome")},
    )

    campaign_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # treatment | holdout
    group: Mapped[str] = mapped_column(String(10))
    offer_id: Mapped[str | None] = mapped_column(String(36))
    # The template's title, what was promoted (staff-written).
    promoted: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    promoted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # crm.value.message.requested's request id: engage's delivery report names it.
    request_id: Mapped[str | None] = mapped_column(String(36))
    # holdout | requested | sent | failed | bounced | refused | capped (at the template's per-customer cap)
    outcome: Mapped[str] = mapped_column(String(20))
    outcome_reason: Mapped[str | None] = mapped_column(String(500))
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MarketingConsent(Base):
    """The customer's current consent to marketing on a channel (crm.engage.consent.changed):
    without a granted row a customer is never in a campaign's audience."""

    __tablename__ = "marketing_consents"
    __table_args__ = ({"info": about_customers("whether the customer may be sent marketing on each channel")},)

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Purchase(Base):
    """A purchase (crm.identify.transaction.recorded) in the reporting currency, what was
    refunded of it, and whether it was voided: campaign and playbook results read these."""

    __tablename__ = "purchases"
    __table_args__ = (
        Index("ix_purchases_customer", "customer_id", "occurred_at"),
        {"info": about_customers("the customer's purchases, for campaign results")},
    )

    transaction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2, asdecimal=True))
    refunded: Mapped[Decimal] = mapped_column(Numeric(14, 2, asdecimal=True), default=Decimal(0))
    voided: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlaybookMember(Base):
    """A customer who entered one of lifecycle's playbooks, in its treatment group or its
    holdout (crm.lifecycle.playbook.entered), and the offer value issued at the playbook's
    request: results compare purchases in each member's window after entering, by group."""

    __tablename__ = "playbook_members"
    __table_args__ = (
        Index("ix_playbook_members_customer", "customer_id"),
        {"info": about_customers("the playbooks the customer was in: group and the offer issued")},
    )

    playbook_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # treatment | holdout
    group: Mapped[str] = mapped_column(String(10))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    offer_id: Mapped[str | None] = mapped_column(String(36))
    # issued | budget_exhausted | customer_cap | template_expired | unknown_template (NULL: none asked for)
    offer_outcome: Mapped[str | None] = mapped_column(String(30))
