"""engage's consent ledger: every grant and withdrawal, appended, never changed; and the
current state per customer, purpose and channel that sends check (one key lookup)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class ConsentEntry(Base):
    __tablename__ = "consent_ledger"
    __table_args__ = (
        Index("ix_consent_ledger_customer", "customer_id", "changed_at", "id"),
        {"info": about_customers("proof of what the customer agreed to, when, and on what notice")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    purpose: Mapped[str] = mapped_column(String(20))  # ConsentPurpose
    channel: Mapped[str] = mapped_column(String(20))  # MessageChannel
    granted: Mapped[bool] = mapped_column(Boolean)
    legal_basis: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(40))
    notice_version: Mapped[str | None] = mapped_column(String(40))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentState(Base):
    """The newest ledger entry per (customer, purpose, channel): what a send checks."""

    __tablename__ = "consent_state"
    __table_args__ = ({"info": about_customers("the customer's current consent, per purpose and channel")},)

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    entry_id: Mapped[str] = mapped_column(String(36))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
