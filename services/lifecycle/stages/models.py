"""The stage machine's own tables: what lifecycle learns of each customer besides purchases
(feedback and escalations), the versioned rule sets, the sweeps and the sweep's lease.

Each customer's stage and history stay in services/lifecycle/models.py (`customer_stages`,
`stage_transitions`); identify's scores and the purchase dates are `customer_profiles`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.lifecycle.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class CustomerSignals(Base):
    """The latest detractor answer, high-effort answer and escalated ticket of each customer
    (from engage's feedback and lifecycle's tickets): the rules count each once per stage,
    when it came after the customer entered its stage."""

    __tablename__ = "customer_signals"
    __table_args__ = ({"info": about_customers("feedback and escalations that move the customer's stage")},)

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    detractor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nps: Mapped[int | None] = mapped_column(Integer)  # the detractor answer's score (0-6)
    high_effort_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    effort: Mapped[str | None] = mapped_column(String(20))  # e.g. "effort 5" or "ces 1"
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalations: Mapped[int] = mapped_column(Integer, default=0)


class StageRuleSet(Base):
    """Every version of the stage rules (PUT /v1/lifecycle/rules adds one; none: the defaults, version 1)."""

    __tablename__ = "stage_rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Sweep(Base):
    """One run of the sweep: what started it, what it did."""

    __tablename__ = "lifecycle_sweeps"
    __table_args__ = (Index("ix_lifecycle_sweeps_started", "started_at", "sweep_id"),)

    sweep_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(20))  # schedule, request, rules
    status: Mapped[str] = mapped_column(String(20))  # running, done, failed
    holder: Mapped[str] = mapped_column(String(100))  # the process that ran it
    rule_version: Mapped[int] = mapped_column(Integer)
    historical: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    evaluated: Mapped[int] = mapped_column(Integer, default=0)
    transitions: Mapped[int] = mapped_column(Integer, default=0)
    risk_changes: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500))


class Lease(Base):
    """Who may run the sweep until when: taken with one atomic UPDATE (only when expired or
    already the taker's), renewed between chunks, released at the end."""

    __tablename__ = "lifecycle_leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
