"""identify's tables: customers, transactions, their summaries and scores, imports and the
portfolio model (plus the messaging tables)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.database import NAMING_CONVENTION, UTCDateTime, utcnow
from shared.events.messaging import messaging_tables
from shared.privacy.classification import about_customers, personal
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)
# Schema the models do not describe, made by migrations per database and left out of
# Alembic's comparison: the substring search index (services/identify/search/repository.py).
Base.metadata.info["unmanaged_prefixes"] = ("customer_search", "ix_customers_search")


class Customer(Base):
    __tablename__ = "customers"
    # Sorted listings (GET /v1/customers?sort=created_at). The name sort's index and the
    # substring search index differ by database: see services/identify/search/.
    __table_args__ = (
        Index("ix_customers_created", "created_at", "id"),
        # A unique index, not a constraint: adding one on SQLite rebuilds no table (a rebuild
        # drops the search index's triggers, services/identify/search/).
        Index("ix_customers_referral_code", "referral_code", unique=True),
        {"info": about_customers("who the customer is and how to reach them: the customer record", column="id")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    # Lower-cased email: uniqueness is case-insensitive on every database.
    email_key: Mapped[str | None] = mapped_column(String(320), unique=True, info=personal("email"))
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True, info=personal("identifier"))
    name: Mapped[str | None] = mapped_column(String(200), info=personal("name"))
    phone: Mapped[str | None] = mapped_column(String(50), info=personal("phone"))
    # Match keys for identity resolution (see services/identify/resolution): the
    # canonical email (gmail dots and +tags folded), the E.164 phone, the folded name.
    email_match_key: Mapped[str | None] = mapped_column(String(320), index=True, info=personal("email"))
    phone_key: Mapped[str | None] = mapped_column(String(32), index=True, info=personal("phone"))
    name_key: Mapped[str | None] = mapped_column(String(200), index=True, info=personal("name"))
    # The email or phone matched an erased customer's suppression entry at creation: never
    # market to this customer (services/identify/privacy).
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # When the customer's personal data was erased (the id and the facts stay).
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A merged customer points at its survivor and takes no new data.
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    merged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    referred_by: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    # The customer's own referral code (customers/referral_codes.py): it points at a person.
    referral_code: Mapped[str | None] = mapped_column(String(8), info=personal("identifier"))
    purchase_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerNameToken(Base):
    """One token of a customer's `name_key`: an index from a name token to the customers
    whose name holds it, so fuzzy name matching compares a small candidate set."""

    __tablename__ = "customer_name_tokens"
    __table_args__ = ({"info": about_customers("fuzzy name matching for duplicates", erase="delete")},)

    token: Mapped[str] = mapped_column(String(200), primary_key=True, info=personal("name"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        Index("ix_transactions_customer_occurred", "customer_id", "occurred_at", "id"),
        # GET /v1/transactions: everyone's, newest first, over a period (a range scan, no sort).
        Index("ix_transactions_occurred", "occurred_at", "id"),
        {"info": about_customers("the customer's purchases: revenue, scores and the portfolio")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True))
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Optional profit inputs: margin earned on the sale and the cost of serving it.
    margin: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The amount in the portfolio's reporting currency, at `fx_rate` (1 unit of `currency` =
    # fx_rate units of reporting_currency; 1 in the reporting currency). Only these are summed.
    # NULL for a transaction recorded before rates existed in a currency other than the
    # reporting one (see migration 5c3e9a1f7b20): it counts as a purchase but adds no revenue.
    reporting_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    reporting_currency: Mapped[str | None] = mapped_column(String(3))
    fx_rate: Mapped[Decimal | None] = mapped_column(Numeric(24, 10, asdecimal=True))
    # recorded | voided (recorded in error: out of counts, revenue and scores).
    status: Mapped[str] = mapped_column(String(16), default="recorded", server_default="recorded")
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    # Sums of the transaction's refunds (transaction_refunds), in its currency and the reporting one.
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0, server_default="0")
    refunded_reporting_amount: Mapped[Decimal] = mapped_column(
        Numeric(18, 4, asdecimal=True), default=0, server_default="0"
    )


class Refund(Base):
    """Money given back on a purchase: lowers its revenue, not the purchase count."""

    __tablename__ = "transaction_refunds"
    __table_args__ = (
        Index("ix_transaction_refunds_transaction", "transaction_id", "occurred_at", "id"),
        {
            "info": about_customers(
                "money given back on the customer's purchases",
                column="transaction_id",
                via=("transactions", "customer_id"),
            )
        },
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("transactions.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True))
    reporting_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    reason: Mapped[str] = mapped_column(Text, info=personal("free_text"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FxRate(Base):
    """1 unit of `currency` = `rate` units of the reporting currency, from `day` until the
    next rate of that currency."""

    __tablename__ = "fx_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(24, 10, asdecimal=True))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurchaseDay(Base):
    """One row per customer and UTC purchase day: the same-day convention of the
    BG/NBD papers (purchases on one day count once) and the input of calibrated fits."""

    __tablename__ = "purchase_days"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    purchases: Mapped[int] = mapped_column(default=0)
    spend: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)


class PurchaseSummary(Base):
    """Each customer's purchases, kept current as transactions arrive so analysis never
    rescans them. `first_day_spend` lets the spend model use repeat purchases only."""

    __tablename__ = "purchase_summaries"
    # Customers listed by last purchase (range filters and sort=last_purchase).
    __table_args__ = (Index("ix_purchase_summaries_last", "last_purchase_at", "customer_id"),)

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    first_purchase_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[datetime] = mapped_column(UTCDateTime)
    purchases: Mapped[int] = mapped_column(default=0)
    purchase_days: Mapped[int] = mapped_column(default=0)
    total_spend: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)
    first_day_spend: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)
    total_margin: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    total_cost: Mapped[Decimal | None] = mapped_column(Numeric(18, 4, asdecimal=True))
    # Σ spend · (1 + discount_rate)^((2000-01-01 − purchase day) / 365 days): revenue
    # compounded to a fixed reference day, so historic CLV at any later day is one
    # multiplication, with no pass over the purchase days. Recomputed when the rate changes.
    discounted_spend: Mapped[float] = mapped_column(Float, default=0.0)
    discount_rate: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerCosts(Base):
    """Configurable per-customer costs of acquiring, selling to and serving a customer."""

    __tablename__ = "customer_costs"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    acquisition: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)
    selling: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)
    service: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True), default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportJob(Base):
    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    filename: Mapped[str | None] = mapped_column(String(300))
    file_format: Mapped[str] = mapped_column(String(16))  # csv | ndjson
    mapping: Mapped[dict] = mapped_column(JSON, default=dict)
    create_customers: Mapped[bool] = mapped_column(Boolean, default=False)
    rows_read: Mapped[int] = mapped_column(default=0)
    recorded: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    customers_created: Mapped[int] = mapped_column(default=0)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportRejection(Base):
    __tablename__ = "import_rejections"

    import_id: Mapped[str] = mapped_column(ForeignKey("imports.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)


class PortfolioModel(Base):
    """A fitted model version: BG/NBD, Pareto/NBD and Gamma-Gamma parameters."""

    __tablename__ = "portfolio_models"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time_unit: Mapped[str] = mapped_column(String(8))  # day | week
    calibration_end: Mapped[date | None] = mapped_column(Date)
    params: Mapped[dict] = mapped_column(JSON)
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PortfolioView(Base):
    """A view of the whole portfolio (`pareto`, `segments`) as a refit computed it: the
    answer GET /v1/portfolio/<name> serves, one row each, replaced by every refit in the
    transaction that stores its model. Computed per request they took ~1 s each over a
    million customers (docs/benchmarks.md, "The console"); read, one row."""

    __tablename__ = "portfolio_views"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refit(Base):
    __tablename__ = "portfolio_refits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed
    time_unit: Mapped[str] = mapped_column(String(8))
    calibration_end: Mapped[date | None] = mapped_column(Date)
    model_version: Mapped[int | None] = mapped_column(Integer)
    customers_scored: Mapped[int] = mapped_column(default=0)
    failure: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # At most one refit waits to run (the queue is bounded); a second queued row is refused.
    __table_args__ = (
        Index(
            "uq_portfolio_refits_queued",
            "status",
            unique=True,
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
    )


class CustomerScore(Base):
    """A customer's current scores under a model version."""

    __tablename__ = "customer_scores"
    # Customers listed by predicted CLV, overall and within a segment (GET /v1/customers
    # ?sort=-clv&segment=...). A refit rewrites every row, and keeping these two current
    # row by row made its write of a million scores 36-41 s instead of ~3.3 s; so on
    # SQLite a refit drops them before its bulk write and builds them again after
    # (services/identify/portfolio/refits.py, ~1.7 s; docs/benchmarks.md), and
    # per-purchase re-scores keep them in between.
    __table_args__ = (
        Index("ix_customer_scores_clv", "predicted_clv", "customer_id"),
        Index("ix_customer_scores_segment_clv", "segment", "predicted_clv", "customer_id"),
    )

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    model_version: Mapped[int | None] = mapped_column(Integer)
    recency: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int | None] = mapped_column(Integer)
    monetary: Mapped[int | None] = mapped_column(Integer)
    segment: Mapped[str | None] = mapped_column(String(40))
    historic_clv: Mapped[float | None] = mapped_column(Float)
    predicted_clv: Mapped[float | None] = mapped_column(Float)
    expected_purchases: Mapped[float | None] = mapped_column(Float)
    probability_alive: Mapped[float | None] = mapped_column(Float)
    # Gamma-Gamma's expected spend per purchase (reporting currency): value's next best offer.
    expected_spend: Mapped[float | None] = mapped_column(Float)
    kinds: Mapped[list] = mapped_column(JSON, default=list)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferralSeen(Base):
    """Referrals as network recorded them (crm.network.referral.recorded): the evidence
    for benchmark customers, whom others follow."""

    __tablename__ = "referrals_seen"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(36), index=True)
    # Indexed: a referred customer's purchase re-scores its referrer (referred revenue).
    referred_id: Mapped[str] = mapped_column(String(36), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ShippedIdeaSeen(Base):
    """Ideas customers proposed that value shipped (crm.value.idea.shipped): the evidence
    for inspiration customers, who push the business to improve. Ids only: the idea's
    text stays in value."""

    __tablename__ = "shipped_ideas_seen"
    __table_args__ = (
        {"info": about_customers("the customer's shipped ideas: evidence that they inspire improvement")},
    )

    idea_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceCostSeen(Base):
    """What serving the customer on lifecycle's tickets cost (crm.lifecycle.service_cost.recorded),
    in the reporting currency: subtracted in the customer's historic CLV, each cost compounded
    from when it was recorded to the as-of day, as the customer's spend is (docs/portfolio.md)."""

    __tablename__ = "service_costs_seen"
    __table_args__ = ({"info": about_customers("what serving the customer on tickets cost, for their lifetime value")},)

    cost_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    ticket_id: Mapped[str | None] = mapped_column(String(36))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4, asdecimal=True))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HelpfulMarksSeen(Base):
    """Each customer's helpful marks in engage's communities, as engage last announced the
    total (crm.engage.community.helpfulness.changed): evidence for benchmark customers.

    Kept under the id engage named: after a merge engage announces the survivor's new
    total, so a merged id's row is never read again.
    """

    __tablename__ = "helpful_marks_seen"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    helpful_marks: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerKind(Base):
    """One row per strategically significant kind a customer holds, with its evidence:
    lists by kind stay indexed queries on PostgreSQL and SQLite alike."""

    __tablename__ = "customer_kinds"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    rank_value: Mapped[float] = mapped_column(Float, default=0.0)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)


# In the lists' order (kind, strongest evidence first, then id), so that a page of every
# kind is a walk that stops after the page. In ascending rank order, as it was, SQLite
# sorted each kind's rows for the first page of all kinds: 123-180 ms for the ~90,000
# high-future-value customers of a million, <1 ms now (docs/benchmarks.md, "The console").
Index(
    "ix_customer_kinds_kind_rank",
    CustomerKind.kind,
    CustomerKind.rank_value.desc(),
    CustomerKind.customer_id,
)


# --- erasures (services/identify/privacy) ----------------------------------------------


class Erasure(Base):
    """A customer's erasure (GDPR Art. 17): asked once, reported by every service."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), unique=True)
    merged_ids: Mapped[list] = mapped_column(JSON, default=list)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The events about the customer deleted from the JetStream stream once every service reported.
    stream_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stream_messages: Mapped[int | None] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ErasureReport(Base):
    """What one service did for an erasure (crm.<service>.customer.erasure_applied)."""

    __tablename__ = "erasure_reports"

    erasure_id: Mapped[str] = mapped_column(ForeignKey("erasures.id"), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    tables: Mapped[dict] = mapped_column(JSON, default=dict)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Suppression(Base):
    """A keyed hash (HMAC-SHA256) of an erased customer's normalised email or phone: a
    person created again with either is flagged `suppressed` and never marketed to."""

    __tablename__ = "suppressions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # email | phone
    erasure_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
