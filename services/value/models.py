"""value's tables: the customers it knows and their offers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from sqlalchemy import Index, Integer, MetaData, Numeric, String, Table, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime
from shared.events.customer_aliases import CustomerAliases
from shared.events.customer_profiles import CustomerProfiles
from shared.events.known_customers import KnownCustomers
from shared.events.messaging import messaging_tables
from shared.privacy.classification import about_customers, personal
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
known_customers = KnownCustomers(Base.metadata)
aliases = CustomerAliases(Base.metadata)
# Segment, kinds, stage and purchase dates from identify's and lifecycle's events
# (campaign audiences and next best offer).
profiles = CustomerProfiles(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_customer", "customer_id", "id"),
        # At most one automatic offer of each kind per customer (NULL for manual offers).
        UniqueConstraint("customer_id", "automatic_kind", name="uq_offers_customer_automatic_kind"),
        UniqueConstraint("coupon_code", name="uq_offers_coupon_code"),
        # Next best offer's response rates: per template and segment at issue, issued against redeemed.
        Index("ix_offers_template_segment", "template_id", "segment", "status"),
        Index("ix_offers_campaign", "campaign_id", "status"),
        {"info": about_customers("the offers issued to the customer and whether they were redeemed")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(50))
    # Written by people: it may name the customer.
    title: Mapped[str] = mapped_column(String(200), info=personal("free_text"))
    discount_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2, asdecimal=True))
    status: Mapped[str] = mapped_column(String(20))  # issued | redeemed
    automatic_kind: Mapped[str | None] = mapped_column(String(50))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Offers from a template (services/value/offers/) and their coupons; NULL on older rows.
    template_id: Mapped[str | None] = mapped_column(String(36))
    # Not personal: a random code, the customer's only through this row.
    coupon_code: Mapped[str | None] = mapped_column(String(20))
    amount_off: Mapped[Decimal | None] = mapped_column(Numeric(12, 2, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(String(3))
    free_item: Mapped[str | None] = mapped_column(String(200))
    points: Mapped[int | None] = mapped_column(Integer)
    # What one offer costs the business (the template's, at issue).
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 2, asdecimal=True))
    # Valid from (a template's window may open after issue); NULL: at once.
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The customer's RFM segment when it was issued (value's profile read model).
    segment: Mapped[str | None] = mapped_column(String(50))
    campaign_id: Mapped[str | None] = mapped_column(String(36))
    playbook_id: Mapped[str | None] = mapped_column(String(36))
    # The purchase the redemption applied to (identify's transaction id), when named.
    redeemed_transaction_id: Mapped[str | None] = mapped_column(String(36))


class SuppressedCustomer(Base):
    """A customer never to be marketed to: identify flagged it `suppressed` at creation (its
    email or phone matched an erased person's), or it was erased. No automatic offers."""

    __tablename__ = "suppressed_customers"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.value.campaigns import models as _campaigns  # noqa: E402, F401
from services.value.ideas import models as _ideas  # noqa: E402, F401
from services.value.nbo import models as _nbo  # noqa: E402, F401
from services.value.offers import models as _offers  # noqa: E402, F401
from services.value.perceived import models as _perceived  # noqa: E402, F401
from services.value.referrals import models as _referrals  # noqa: E402, F401
