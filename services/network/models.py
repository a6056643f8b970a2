"""network's tables: stakeholders, referrals and the customers it knows (plus the messaging tables)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import Index, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime, utcnow
from shared.events.customer_aliases import CustomerAliases
from shared.events.known_customers import KnownCustomers
from shared.events.messaging import messaging_tables
from shared.privacy.classification import about_customers, personal
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
known_customers = KnownCustomers(Base.metadata)
aliases = CustomerAliases(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


class Stakeholder(Base):
    __tablename__ = "stakeholders"
    __table_args__ = (Index("ix_stakeholders_kind_id", "kind", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    # Stakeholders are people too (not customers: an erasure of a customer leaves them).
    name: Mapped[str] = mapped_column(String(200), info=personal("name"))
    email: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    organisation: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    """`referrer_id` brought in `referred_id` (a customer is referred at most once)."""

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_referrer_id", "referrer_id", "id"),
        {"info": about_customers("who referred whom: referral rewards and benchmark evidence", column="referrer_id")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(36))
    referred_id: Mapped[str] = mapped_column(String(36), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


from services.network.webhooks import models as _webhooks  # noqa: E402,F401  (its tables on Base)
