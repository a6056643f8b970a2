"""The value map's tables: what customers judge (attributes and their weights), whom they
compare us with (competitors), and their ratings.

value owns the attribute and competitor lists (shared/decisions.md). A rating keeps the
attribute and subject as matching keys (the name trimmed and case-folded), not as ids:
engage's surveys name them as text, so a rating of a competitor value does not list yet is
kept and counted as unmapped, and maps once the competitor is added. A rename moves the
ratings' keys in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers

NAME_MAX = 100
KEY_MAX = 100


class ValueAttribute(Base):
    """An attribute customers judge us and competitors on (quality, service, price, ...)."""

    __tablename__ = "value_attributes"
    __table_args__ = (
        Index("uq_value_attributes_key", "key", unique=True),
        # At most one price attribute: the value map's perceived price.
        Index(
            "uq_value_attributes_price",
            "price",
            unique=True,
            sqlite_where=text("price"),
            postgresql_where=text("price"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    key: Mapped[str] = mapped_column(String(KEY_MAX))
    # Importance, any non-negative number (points out of 100, say): the map normalises them.
    weight: Mapped[float] = mapped_column(Float)
    price: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Competitor(Base):
    """A named competitor (a business, not a person: its name is not personal data)."""

    __tablename__ = "value_competitors"
    __table_args__ = (Index("uq_value_competitors_key", "key", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    key: Mapped[str] = mapped_column(String(KEY_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ValueRating(Base):
    """One customer's score of us or a competitor on one attribute, from engage's survey or
    entered in bulk. No free text: nothing here is personal, so an erasure keeps the rows
    (an export shows them)."""

    __tablename__ = "value_ratings"
    __table_args__ = (
        # The map's one query read from this index alone: a window is a range of months, the
        # GROUP BY (month, attribute, subject, score) its order (no sort), and segment and
        # rated_at are filtered in it (docs/benchmarks.md, "Value map").
        Index("ix_value_ratings_map", "month", "attribute_key", "subject_key", "score", "segment", "rated_at"),
        Index("ix_value_ratings_customer", "customer_id", "id"),
        {"info": about_customers("the scores the customer gave us and competitors, for the value map")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    attribute_key: Mapped[str] = mapped_column(String(KEY_MAX))
    # `us`, or a competitor's key.
    subject_key: Mapped[str] = mapped_column(String(KEY_MAX))
    # 1 (worst) to 10 (best); a survey's score outside that is kept and counted as unmapped.
    score: Mapped[int] = mapped_column(Integer)
    # The customer's RFM segment when it rated.
    segment: Mapped[str | None] = mapped_column(String(50))
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # `YYYY-MM` of rated_at (UTC): the trend's month, grouped the same way on SQLite and PostgreSQL.
    month: Mapped[str] = mapped_column(String(7))
    source: Mapped[str] = mapped_column(String(20))  # survey | entered
    response_id: Mapped[str | None] = mapped_column(String(36))
