"""engage's surveys, the invitations they send, and the answers: experience data per touchpoint.

A survey is a list of typed questions (services/engage/feedback/questions.py) and the event
types after which it is sent (its rules, services/engage/feedback/triggers.py). Each
invitation is a row with its own signed link; a response answers at most one invitation
(`uq_survey_responses_invitation_id`: one answer per link, even when two arrive at once).

A response keeps what the reports group by as it was when the customer answered: the
touchpoint (event id, type, channel), the customer's stage, segment and kinds, and the month.
Kinds are many per customer, so `survey_response_kinds` holds one row per (response, kind)
with the scores beside it: the report by kind is one grouped pass over that table, as the
report by anything else is one grouped pass over `survey_responses`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal

# The report's metrics, and the columns of survey_responses it groups by (kind: survey_response_kinds).
SCORES = ("nps", "csat", "ces")
GROUPINGS = ("segment", "stage", "channel", "month")


class Survey(Base):
    __tablename__ = "surveys"
    __table_args__ = (Index("ix_surveys_created", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # [{id, type, text, required, attributes?, subjects?}] as questions.py checks them.
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The event types after which it is sent (triggers.TRIGGERS' keys).
    triggers: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The invitation email's subject; the survey's name when unset.
    email_subject: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SurveyInvitation(Base):
    __tablename__ = "survey_invitations"
    __table_args__ = (
        # The quiet period: a customer's latest invitation.
        Index("ix_survey_invitations_customer", "customer_id", "created_at"),
        {"info": about_customers("which surveys the customer was sent, after which touchpoint")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"))
    customer_id: Mapped[str] = mapped_column(String(36))
    # The event the survey followed; null when staff sent it on demand.
    touchpoint_event_id: Mapped[str | None] = mapped_column(String(36))
    touchpoint_type: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(20))
    # The queued invitation email (engage's messages).
    message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_customer", "customer_id", "received_at", "id"),
        # The report's from/to range.
        Index("ix_survey_responses_received", "received_at"),
        # The report by each grouping: a scan of a narrow covering index, already in the group's
        # order, instead of the table's wide rows sorted (1M responses on SQLite: 0.43 s, not 1.5 s).
        *(Index(f"ix_survey_responses_by_{key}", key, *SCORES, "received_at") for key in GROUPINGS),
        {"info": about_customers("the customer's survey answers: scores, experience and free text")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"))
    # The invitation answered through its link (unique: one answer per link); null when staff recorded it.
    invitation_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(10))  # link | staff
    touchpoint_event_id: Mapped[str | None] = mapped_column(String(36))
    touchpoint_type: Mapped[str | None] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(20))
    # The customer at that moment (engage's customer_profiles).
    stage: Mapped[str | None] = mapped_column(String(20))
    segment: Mapped[str | None] = mapped_column(String(50))
    kinds: Mapped[str | None] = mapped_column(String(200))  # ",kind,kind,"
    nps: Mapped[int | None] = mapped_column(SmallInteger)
    csat: Mapped[int | None] = mapped_column(SmallInteger)
    ces: Mapped[int | None] = mapped_column(SmallInteger)
    effort: Mapped[int | None] = mapped_column(SmallInteger)
    emotion: Mapped[str | None] = mapped_column(String(20))
    # The free-text answers, JSON {question id: text}.
    texts: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM of received_at (UTC)


class ResponseRating(Base):
    """One attribute rating of a response: `(attribute, subject, score)`, subject `us` or a
    competitor's name (value owns the lists and maps them)."""

    __tablename__ = "survey_ratings"
    __table_args__ = (
        {
            "info": about_customers(
                "how the customer rated us and competitors on each attribute",
                column="response_id",
                via=("survey_responses", "customer_id"),
            )
        },
    )

    response_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("survey_responses.id", ondelete="CASCADE"), primary_key=True
    )
    attribute: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject: Mapped[str] = mapped_column(String(100), primary_key=True)
    score: Mapped[int] = mapped_column(SmallInteger)


class ResponseKind(Base):
    """A response once per kind its customer had (one row with `kind` null for none): the
    report by kind groups this table in one pass."""

    __tablename__ = "survey_response_kinds"
    __table_args__ = (
        Index("ix_survey_response_kinds_by_kind", "kind", *SCORES, "received_at"),
        {
            "info": about_customers(
                "the customer's scores by kind of customer, for the feedback report",
                column="response_id",
                via=("survey_responses", "customer_id"),
            )
        },
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(36), ForeignKey("survey_responses.id", ondelete="CASCADE"))
    kind: Mapped[str | None] = mapped_column(String(50))
    nps: Mapped[int | None] = mapped_column(SmallInteger)
    csat: Mapped[int | None] = mapped_column(SmallInteger)
    ces: Mapped[int | None] = mapped_column(SmallInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
