"""engage's tables: interactions, the customers it knows, the customer timeline (plus the messaging tables)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import Index, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime, utcnow
from shared.events.customer_aliases import CustomerAliases
from shared.events.customer_profiles import CustomerProfiles
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
# Segment, kinds, stage and purchase dates from identify's and lifecycle's events (survey answers and communities).
profiles = CustomerProfiles(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_customer_occurred", "customer_id", "occurred_at", "id"),
        {"info": about_customers("the contact history agents read: what was said, on which channel")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(Text, info=personal("free_text"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineEntry(Base):
    """One event about one customer, as the timeline shows it (a read model of the stream).

    The key (customer_id, event_id) makes an event appear at most once per customer
    (a referral appears on two timelines); the index serves the newest-first pages.
    """

    __tablename__ = "timeline"
    __table_args__ = (
        Index("ix_timeline_customer_time", "customer_id", "time", "event_id"),
        {"info": about_customers("the customer's timeline: one line per event about the customer")},
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    # The line may quote a name, an email, an interaction or a refund reason.
    summary: Mapped[str] = mapped_column(String(300), info=personal("free_text"))


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.engage.communities import models as _communities  # noqa: E402, F401
from services.engage.consent import models as _consent  # noqa: E402, F401
from services.engage.contacts import models as _contacts  # noqa: E402, F401
from services.engage.conversations import models as _conversations  # noqa: E402, F401
from services.engage.feedback import models as _feedback  # noqa: E402, F401
from services.engage.templates import models as _templates  # noqa: E402, F401
