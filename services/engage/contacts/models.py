"""engage's contact read model: how to reach each customer (shared/decisions.md), built from
identify's customer events (created, updated, merged, erased), and whether the email
address still takes mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        # Inbound mail is matched to its customer by the sender's address.
        Index("ix_contacts_email_key", "email_key"),
        {"info": about_customers("where to send the customer's messages: email, phone and name")},
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), info=personal("name"))
    email: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    # Lower-cased email, for matching.
    email_key: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    phone: Mapped[str | None] = mapped_column(String(50), info=personal("phone"))
    # A hard bounce: nothing more is sent to this address until it changes.
    email_undeliverable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_undeliverable_reason: Mapped[str | None] = mapped_column(String(500), info=personal("free_text"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
