"""The webhook subscriptions and their delivery log, on network's Base."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.network.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal


class WebhookSubscription(Base):
    """A partner's (or staff's) endpoint and the public event types it receives.

    `secret` signs every delivery and must be recoverable to do so: it is kept as is in
    network's database (docs/partners.md, "Subscribing"). After a rotation the old one
    signs too until `previous_secret_expires_at`.
    """

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_partner_id", "partner_id", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The partner stakeholder whose key made it; None: made by staff (admin, manager).
    partner_id: Mapped[str | None] = mapped_column(String(36))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    # The patterns as given (NATS subject syntax: `*` one token, `>` the rest).
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # Whether its creator held pii:read: personal fields are delivered only then.
    pii: Mapped[bool] = mapped_column(Boolean)
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    rate_limit: Mapped[float | None] = mapped_column(Float)  # deliveries per second
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when every attempt failed (None: the last one succeeded).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One attempt at delivering one event to one subscription.

    The receiver's answer may say anything about the customer the event is about: its
    first KB is personal (decisions.md: webhook delivery logs), and the row names that
    customer (the CloudEvent's subject) so that erasure finds it.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_subscription_id", "subscription_id", "id"),
        Index("ix_webhook_deliveries_customer_id", "customer_id"),
        {"info": about_customers("what a webhook endpoint answered to an event about the customer")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(200))
    # The event's stream sequence: the cursor replay and the feed share.
    sequence: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[str | None] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(Integer)
    # delivered, failed, aborted (the receiver said abort-message), gone (410),
    # refused (the address is not allowed), exhausted (the last attempt failed)
    outcome: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    response_body: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
