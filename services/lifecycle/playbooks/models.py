"""Playbooks' tables: the playbooks as configured, and who entered each (in which group, when,
on which stage transition)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.lifecycle.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class Playbook(Base):
    """A win-back or retention playbook: entering one of `trigger_stages` above
    `min_predicted_clv`, with a purchase within `lookback_days`, starts it (after `enabled_at`)."""

    __tablename__ = "playbooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The stages whose entry fires the playbook (a JSON list of the contract's stage names).
    trigger_stages: Mapped[list[str]] = mapped_column(JSON)
    # Predicted CLV (identify's score, in lifecycle's profiles) at or above this; NULL: any customer.
    min_predicted_clv: Mapped[float | None] = mapped_column(Float)
    lookback_days: Mapped[int] = mapped_column(Integer)
    holdout_share: Mapped[float] = mapped_column(Float)
    # The holdout's seed: sha256(f"{seed}:{customer_id}") decides each customer's group.
    seed: Mapped[str] = mapped_column(String(64))
    # The retention offer: value's offer template (value issues it to treatment customers).
    template_id: Mapped[str | None] = mapped_column(String(36))
    # The outreach ticket's queue (lifecycle's tickets open it from playbook.entered).
    outreach_queue: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean)
    # When it was last enabled: only transitions after it fire the playbook.
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlaybookEntry(Base):
    """A customer entering a playbook: one per playbook and stage transition (the
    crm.lifecycle.stage.changed event that fired it)."""

    __tablename__ = "playbook_entries"
    __table_args__ = (
        # GET /v1/playbooks/{id}/entries: in entry order (uuid7 ids are time ordered).
        Index("ix_playbook_entries_playbook", "playbook_id", "id"),
        # At most once per entry into the stage, whatever redelivers it.
        Index("ux_playbook_entries_transition", "stage_event_id", "playbook_id", unique=True),
        # GET /v1/customers/{id}/playbooks: a customer's entries, newest first.
        Index("ix_playbook_entries_customer", "customer_id", "id"),
        {"info": about_customers("the retention and win-back playbooks the customer entered, and in which group")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    playbook_id: Mapped[str] = mapped_column(String(36))
    customer_id: Mapped[str] = mapped_column(String(36))
    # treatment | holdout
    group: Mapped[str] = mapped_column(String(10))
    stage: Mapped[str] = mapped_column(String(20))
    stage_event_id: Mapped[str] = mapped_column(String(36))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What the treatment customer was given (NULL for the holdout and when the playbook has none).
    template_id: Mapped[str | None] = mapped_column(String(36))
    outreach_queue: Mapped[str | None] = mapped_column(String(100))


class AccountManager(Base):
    """network's current `account_manager_of` relations (crm.network.relation.started and
    .ended): a playbook's outreach ticket goes to the customer's account manager.

    Kept per relation, not per customer: network's merge ends all but one of a survivor's
    managers, and those events may reach lifecycle before or after its own merge step, so the
    set converges on network's whatever the order; until then the newest start is the manager.
    """

    __tablename__ = "account_managers"
    __table_args__ = (
        Index("ix_account_managers_customer", "customer_id"),
        {"info": about_customers("the customer's account manager, who takes its outreach tickets")},
    )

    relation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    # An employee stakeholder of network (tickets' employees know them).
    stakeholder_id: Mapped[str] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
