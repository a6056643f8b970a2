"""lifecycle's tables: each customer's stage, the history of its transitions, merged customer ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime
from shared.events.customer_aliases import CustomerAliases
from shared.events.customer_profiles import CustomerProfiles
from shared.events.messaging import messaging_tables
from shared.privacy.classification import about_customers
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
aliases = CustomerAliases(Base.metadata)
# identify's scores (probability alive, expected purchases, CLV, kinds) and each customer's purchase
# count and dates: what the stage rules, churn risk, playbooks and tiers read (issue 15).
profiles = CustomerProfiles(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


class CustomerStage(Base):
    __tablename__ = "customer_stages"
    # GET /v1/lifecycle/customers?stage=: the customers in a stage, in id order;
    # GET /v1/lifecycle/at-risk: by CLV at risk, highest first.
    __table_args__ = (
        Index("ix_customer_stages_stage", "stage", "customer_id"),
        Index("ix_customer_stages_clv_at_risk", "clv_at_risk", "customer_id"),
        {"info": about_customers("the customer's lifecycle stage, for retention and offers")},
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stage: Mapped[str | None] = mapped_column(String(20))
    # The highest purchase count seen for the customer (events may repeat or reorder).
    purchase_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the customer entered `stage` (its latest transition's time): the rules'
    # days_in_stage, and a purchase after it is renewed buying.
    stage_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The churn risk as the last sweep left it (kept when it moved by RISK_STEP or crossed a
    # band, services/lifecycle/stages/rules.py), its band, drivers, and predicted CLV x risk.
    churn_risk: Mapped[float | None] = mapped_column(Float)
    churn_band: Mapped[str | None] = mapped_column(String(10))
    clv_at_risk: Mapped[float | None] = mapped_column(Float)
    risk_drivers: Mapped[list[Any] | None] = mapped_column(JSON)
    risk_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StageTransition(Base):
    __tablename__ = "stage_transitions"
    __table_args__ = (
        Index("ix_stage_transitions_customer", "customer_id", "seq"),
        {"info": about_customers("the history of the customer's stages")},
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    customer_id: Mapped[str] = mapped_column(String(36))
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[str] = mapped_column(String(36))
    # Why: the rule that fired (null for the purchase steps before rules existed), its rule
    # set's version, the values it saw; historical when the first sweep over imported data made it.
    rule: Mapped[str | None] = mapped_column(String(60))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    historical: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.lifecycle.analytics import models as _analytics  # noqa: E402, F401
from services.lifecycle.loyalty import models as _loyalty  # noqa: E402, F401
from services.lifecycle.playbooks import models as _playbooks  # noqa: E402, F401
from services.lifecycle.stages import models as _stages  # noqa: E402, F401
from services.lifecycle.tickets import models as _tickets  # noqa: E402, F401
