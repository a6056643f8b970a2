"""value's co-creation tables: customers' ideas, their votes and their comments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal


class Idea(Base):
    """An idea a customer proposed. Votes are counted from `idea_votes` when a list asks
    (value-weighted demand joins each voter's predicted CLV then, so it is never stale)."""

    __tablename__ = "ideas"
    __table_args__ = (
        Index("ix_ideas_customer", "customer_id", "id"),
        Index("ix_ideas_status", "status", "id"),
        {"info": about_customers("the ideas the customer proposed, and what became of them")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    # Both written by the customer: they may name them. Erased: the title reads [erased].
    title: Mapped[str] = mapped_column(String(200), info=personal("free_text"))
    description: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    product_area: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))  # IdeaStatus
    # The public reason of the last status change, written by staff for customers.
    status_reason: Mapped[str | None] = mapped_column(String(1000))
    source: Mapped[str] = mapped_column(String(10))  # link | staff
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdeaVote(Base):
    """One vote per customer and idea: the primary key refuses a second."""

    __tablename__ = "idea_votes"
    __table_args__ = (
        Index("ix_idea_votes_customer", "customer_id"),
        {"info": about_customers("the ideas the customer voted for")},
    )

    idea_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(10))
    voted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdeaComment(Base):
    __tablename__ = "idea_comments"
    __table_args__ = (
        Index("ix_idea_comments_idea", "idea_id", "id"),
        Index("ix_idea_comments_customer", "customer_id"),
        # Nothing but what the customer wrote: an erasure deletes the rows.
        {"info": about_customers("the customer's comments on ideas", erase="delete")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idea_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    body: Mapped[str] = mapped_column(Text, info=personal("free_text"))
    source: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
