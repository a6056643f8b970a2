"""network's stakeholders, their relations to customers (every period kept), and what
network knows of those customers' value: their purchases (net of refunds, without voids)
and identify's scores, read from identify's events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.network.models import Base
from shared.db.database import UTCDateTime, utcnow
from shared.events.customer_profiles import CustomerProfiles
from shared.privacy.classification import about_customers, personal

# identify's scores of each customer (segment, predicted CLV): the `network-performance` consumer keeps them.
profiles = CustomerProfiles(Base.metadata)


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
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Relation(Base):
    """One period of a stakeholder's relation to a customer: current while `ended_at` is null.

    Ending a relation keeps its row (the history); starting it again is a new row. The
    indexes serve a customer's network (its periods by start) and a stakeholder's customers.
    """

    __tablename__ = "customer_relations"
    __table_args__ = (
        Index("ix_customer_relations_customer", "customer_id", "started_at", "id"),
        Index("ix_customer_relations_stakeholder", "stakeholder_id", "customer_id"),
        {"info": about_customers("who stands in which relation to the customer, and since when")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    stakeholder_id: Mapped[str] = mapped_column(String(36))
    stakeholder_kind: Mapped[str] = mapped_column(String(20))
    relation: Mapped[str] = mapped_column(String(30))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The gateway's caller (API key or person) who started and ended it; `merge` for a merge.
    started_by: Mapped[str | None] = mapped_column(String(200))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(200))
    ended_reason: Mapped[str | None] = mapped_column(String(20))  # ended, replaced, merged


class Purchase(Base):
    """A customer's purchase as identify announced it, in the reporting currency: refunds
    lower it, a void takes it out (shared/decisions.md)."""

    __tablename__ = "customer_purchases"
    __table_args__ = (
        Index("ix_customer_purchases_customer", "customer_id", "occurred_at"),
        {"info": about_customers("the customer's purchases, for the revenue of a stakeholder's customers")},
    )

    transaction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2, asdecimal=True))
    refunded: Mapped[Decimal] = mapped_column(Numeric(14, 2, asdecimal=True), default=Decimal(0))
    voided: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
