"""network's tables: referrals and the customers it knows (plus the messaging tables)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import Index, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime
from shared.events.customer_aliases import CustomerAliases
from shared.events.known_customers import KnownCustomers
from shared.events.messaging import messaging_tables
from shared.privacy.classification import about_customers
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
known_customers = KnownCustomers(Base.metadata)
aliases = CustomerAliases(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


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


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.network.stakeholders import models as _stakeholders  # noqa: E402, F401
