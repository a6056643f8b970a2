"""lifecycle's tables: each customer's stage, the history of its transitions, merged customer ids."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import BigInteger, Index, Integer, MetaData, String, Table
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
    # GET /v1/lifecycle/customers?stage=: the customers in a stage, in id order.
    __table_args__ = (
        Index("ix_customer_stages_stage", "stage", "customer_id"),
        {"info": about_customers("the customer's lifecycle stage, for retention and offers")},
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stage: Mapped[str | None] = mapped_column(String(20))
    # The highest purchase count seen for the customer (events may repeat or reorder).
    purchase_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


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


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.lifecycle.analytics import models as _analytics  # noqa: E402, F401
from services.lifecycle.loyalty import models as _loyalty  # noqa: E402, F401
from services.lifecycle.playbooks import models as _playbooks  # noqa: E402, F401
from services.lifecycle.tickets import models as _tickets  # noqa: E402, F401
