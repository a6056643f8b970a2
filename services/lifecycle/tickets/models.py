"""Tickets' tables: tickets, their comments and notes, their history, SLA policies, business
calendars, and the employees read model (network's employee stakeholders, the assignees)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.lifecycle.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal


class BusinessCalendar(Base):
    __tablename__ = "business_calendars"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))
    # 0 = Monday … 6 = Sunday.
    working_days: Mapped[list[int]] = mapped_column(JSON)
    # Local wall-clock "HH:MM".
    start_time: Mapped[str] = mapped_column(String(5))
    end_time: Mapped[str] = mapped_column(String(5))
    # Public holidays of this country (and subdivision), from the holidays package.
    holiday_country: Mapped[str | None] = mapped_column(String(2))
    holiday_subdivision: Mapped[str | None] = mapped_column(String(10))
    # Dates of its own, ISO "YYYY-MM-DD".
    holidays: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlaPolicy(Base):
    __tablename__ = "sla_policies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: round the clock.
    calendar_id: Mapped[str | None] = mapped_column(String(36))
    # [{"priority", "customer_kind" (None: everyone), "first_response_minutes", "resolution_minutes"}]
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The policy a ticket gets when it names none (at most one).
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_customer", "customer_id", "id"),
        Index("ix_tickets_status", "status", "id"),
        # The breach check: running tickets whose next due time has passed.
        Index("ix_tickets_due", "next_due_at"),
        {"info": about_customers("the customer's after-sales tickets: what they asked for and how it went")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    subject: Mapped[str | None] = mapped_column(String(300), info=personal("free_text"))
    channel: Mapped[str | None] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    # An employee stakeholder from network, or a queue's name, or both.
    assignee_id: Mapped[str | None] = mapped_column(String(36))
    queue: Mapped[str | None] = mapped_column(String(100))
    # engage's conversation the replies go to.
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    playbook_id: Mapped[str | None] = mapped_column(String(36))
    policy_id: Mapped[str | None] = mapped_column(String(36))
    # The SLA's targets for this ticket (business minutes), fixed when it opens or its priority changes.
    first_response_minutes: Mapped[float | None] = mapped_column(Float)
    resolution_minutes: Mapped[float | None] = mapped_column(Float)
    # Business minutes spent pending or solved: the timers' pauses.
    paused_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The earlier unbreached due time while the timers run (None while paused or done).
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    solved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handling_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketComment(Base):
    """A public comment (the customer sees it: on an email ticket engage sends it) or an internal note."""

    __tablename__ = "ticket_comments"
    __table_args__ = (
        Index("ix_ticket_comments_ticket", "ticket_id", "id"),
        Index("ix_ticket_comments_customer", "customer_id"),
        {"info": about_customers("what staff wrote on the customer's tickets", erase="delete")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    public: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    # An employee stakeholder from network.
    author_id: Mapped[str | None] = mapped_column(String(36))
    # Handling time spent on it: cost to serve.
    minutes: Mapped[float] = mapped_column(Float, default=0.0)
    # The reply engage was asked to send (crm.lifecycle.reply.requested), if any.
    reply_request_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TicketChange(Base):
    """The ticket's history: every change, who made it and when."""

    __tablename__ = "ticket_history"
    __table_args__ = (
        Index("ix_ticket_history_ticket", "ticket_id", "seq"),
        Index("ix_ticket_history_customer", "customer_id"),
        {"info": about_customers("the history of the customer's tickets")},
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    ticket_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    # created, status, priority, assignee_id, queue, category, subject, comment, note, sla_breached, escalated
    field: Mapped[str] = mapped_column(String(40))
    # A subject's old and new text are the customer's words: personal.
    from_value: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    to_value: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    # The gateway's caller (API key or person), `system` for the SLA check, `playbook:<id>` for outreach.
    actor: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Employee(Base):
    """network's employee stakeholders (crm.network.stakeholder.created, kind employee): who a
    ticket may be assigned to and who writes its comments. Ids only."""

    __tablename__ = "employees"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
