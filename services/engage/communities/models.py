"""Communities, their members (every stint, joined and left), their posts (a thread is a
topic post and its replies) and the helpful marks members give each other's posts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal


class Community(Base):
    __tablename__ = "communities"
    __table_args__ = (Index("ix_communities_scope", "scope_type", "scope_value"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # segment | kind | stage (members follow identify's scores and lifecycle's stages) | list (by hand)
    scope_type: Mapped[str] = mapped_column(String(20))
    # The segment, kind or stage; null for a hand-picked list.
    scope_value: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CommunityMember(Base):
    """One stint of a customer in a community: a member now while `left_at` is null. A
    customer who leaves and joins again has two rows (the history)."""

    __tablename__ = "community_members"
    __table_args__ = (
        Index("ix_community_members_community", "community_id", "left_at", "id"),
        Index("ix_community_members_customer", "customer_id", "community_id"),
        {"info": about_customers("which communities the customer belonged to, and when")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    # auto (the community's scope) or manual (added to a hand-picked list)
    source: Mapped[str] = mapped_column(String(10))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CommunityPost(Base):
    """A topic (`thread_id` null: it starts a thread) or a reply in the thread `thread_id`.

    Written by a member customer or by staff (an employee id). A hidden post leaves every
    list and count but stays for moderators; a locked topic takes no more replies.
    `reply_count` and `helpful_marks` count only what is not hidden.
    """

    __tablename__ = "community_posts"
    __table_args__ = (
        Index("ix_community_posts_thread", "community_id", "thread_id", "id"),
        Index("ix_community_posts_author", "author_customer_id"),
        {"info": about_customers("what the customer wrote in communities", column="author_customer_id")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    community_id: Mapped[str] = mapped_column(String(36))
    thread_id: Mapped[str | None] = mapped_column(String(36))
    author_customer_id: Mapped[str | None] = mapped_column(String(36))
    author_employee_id: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(String(200), info=personal("free_text"))
    body: Mapped[str] = mapped_column(Text, info=personal("free_text"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    helpful_marks: Mapped[int] = mapped_column(Integer, default=0)
    hidden_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hidden_by: Mapped[str | None] = mapped_column(String(100))
    hidden_reason: Mapped[str | None] = mapped_column(String(200))
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(100))


class HelpfulMark(Base):
    """A member found a post helpful: at most one per member and post."""

    __tablename__ = "community_helpful_marks"
    __table_args__ = (
        Index("ix_community_helpful_marks_customer", "customer_id"),
        {"info": about_customers("which community posts the customer found helpful")},
    )

    post_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)
