"""The loyalty programme's tables: the programme (one row), each customer's account (balance
and tier), the append-only points ledger, the offers value sells for points (a read model of
crm.value.offer_template.changed) and the redemptions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from services.lifecycle.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class LoyaltyProgramme(Base):
    """The programme as GET/PUT /v1/loyalty/programme last set it (one row, id 1); before the
    first PUT the defaults of services/lifecycle/loyalty/service.py DEFAULT hold."""

    __tablename__ = "loyalty_programme"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    # Points per unit of the reporting currency (rounded down per purchase).
    points_per_unit: Mapped[Decimal] = mapped_column(Numeric(12, 4, asdecimal=True))
    # Each earning (and credit) expires this many months after it; NULL: never.
    expiry_months: Mapped[int | None] = mapped_column(Integer)
    # points_12m | clv
    tier_basis: Mapped[str] = mapped_column(String(20))
    # [{"name": "silver", "threshold": 1000}, ...] in rising thresholds.
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoyaltyAccount(Base):
    __tablename__ = "loyalty_accounts"
    __table_args__ = ({"info": about_customers("the customer's loyalty points balance and tier")},)

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The ledger's balance (the sum of its lots' remaining points).
    balance: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str | None] = mapped_column(String(40))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoyaltyEntry(Base):
    """One line of a customer's points ledger, never changed in what it says (kind, points,
    balance after it, when). An entry that brings points in (earned, credited) is also a lot:
    `remaining` is what is left of it for redemptions, take-backs and its expiry, `taken_back`
    what refunds and voids took back of it (bookkeeping, not what the entry says)."""

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        Index("ix_loyalty_entries_customer", "customer_id", "entry_id"),
        # A purchase's lot, for its refunds and void.
        Index("ix_loyalty_entries_source", "source_id"),
        # The lots the sweep expires.
        Index("ix_loyalty_entries_expiry", "expires_at"),
        {"info": about_customers("the customer's loyalty points ledger")},
    )

    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(20))
    points: Mapped[int] = mapped_column(Integer)
    balance: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What the entry is for, unique: `earned:<transaction id>`, `expired:<entry id>`, ...
    source_key: Mapped[str] = mapped_column(String(120), unique=True)
    # The purchase, offer or redemption it is about.
    source_id: Mapped[str | None] = mapped_column(String(36))
    source_event_id: Mapped[str | None] = mapped_column(String(36))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    remaining: Mapped[int | None] = mapped_column(Integer)
    taken_back: Mapped[int] = mapped_column(Integer, default=0)
    # An earning's purchase amount in the purchase's currency: refunds take back in proportion.
    basis: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))


class LoyaltyReward(Base):
    """An offer template value sells for points (crm.value.offer_template.changed)."""

    __tablename__ = "loyalty_rewards"

    template_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    points_price: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoyaltyRedemption(Base):
    __tablename__ = "loyalty_redemptions"
    __table_args__ = (
        Index("ix_loyalty_redemptions_customer", "customer_id", "redemption_id"),
        {"info": about_customers("the offers the customer bought with loyalty points")},
    )

    redemption_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    template_id: Mapped[str] = mapped_column(String(36))
    points: Mapped[int] = mapped_column(Integer)
    # pending (debited, value not yet answered) | issued | refused (points returned)
    status: Mapped[str] = mapped_column(String(20))
    offer_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(String(40))
    # {lot entry id: points taken from it}: a refusal puts them back where they came from.
    allocation: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
