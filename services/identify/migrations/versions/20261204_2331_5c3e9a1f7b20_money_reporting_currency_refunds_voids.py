"""money: reporting amounts, exchange rates, refunds and voids

Adds the reporting amount, currency and rate of each transaction, its status
(recorded | voided) and refunded sums, and the tables of exchange rates and refunds.

Backfill of existing transactions (no rates existed before this revision):
- those in the reporting currency (VALUECHAIN_IDENTIFY_REPORTING_CURRENCY when the
  migration runs, default USD) get reporting_amount = amount at rate 1;
- those in any other currency get no reporting amount (NULL): no rate can be known
  for them. They stay purchases (counts, purchase days) but add no revenue, and the
  purchase days and summaries of their customers are recomputed without their amounts
  (their discounted spend is left for the next refit, which recomputes stale rows). To
  give them a value, record them again in the reporting currency, or void them.
- every existing transaction is `recorded`, with nothing refunded.

Revision ID: 5c3e9a1f7b20
Revises: 5b1e0c7a9d42
Create Date: 2026-12-04 23:30:00

"""
from collections import defaultdict
from datetime import timezone
from decimal import Decimal
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import shared.db.database

# revision identifiers, used by Alembic.
revision: str = '5c3e9a1f7b20'
down_revision: Union[str, Sequence[str], None] = '5b1e0c7a9d42'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('fx_rates',
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('rate', sa.Numeric(precision=24, scale=10), nullable=False),
    sa.Column('updated_at', shared.db.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('currency', 'day', name=op.f('pk_fx_rates'))
    )
    op.create_table('transaction_refunds',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('transaction_id', sa.String(length=36), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('reporting_amount', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('occurred_at', shared.db.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('recorded_at', shared.db.database.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_transaction_refunds_transaction_id_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transaction_refunds')),
    sa.UniqueConstraint('external_id', name=op.f('uq_transaction_refunds_external_id'))
    )
    with op.batch_alter_table('transaction_refunds', schema=None) as batch_op:
        batch_op.create_index('ix_transaction_refunds_transaction', ['transaction_id', 'occurred_at', 'id'], unique=False)

    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reporting_amount', sa.Numeric(precision=18, scale=4), nullable=True))
        batch_op.add_column(sa.Column('reporting_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('fx_rate', sa.Numeric(precision=24, scale=10), nullable=True))
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='recorded', nullable=False))
        batch_op.add_column(sa.Column('voided_at', shared.db.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('void_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refunded_amount', sa.Numeric(precision=18, scale=4), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('refunded_reporting_amount', sa.Numeric(precision=18, scale=4), server_default='0', nullable=False))

    _backfill(op.get_bind())


def _backfill(connection) -> None:
    from services.identify.settings import PortfolioSettings

    reporting = PortfolioSettings().reporting_currency
    transactions = sa.table(
        "transactions", sa.column("customer_id", sa.String), sa.column("currency", sa.String),
        sa.column("amount", sa.Numeric(18, 4)), sa.column("margin", sa.Numeric(18, 4)),
        sa.column("cost", sa.Numeric(18, 4)), sa.column("occurred_at", shared.db.database.UTCDateTime(timezone=True)),
        sa.column("reporting_amount", sa.Numeric(18, 4)), sa.column("reporting_currency", sa.String),
        sa.column("fx_rate", sa.Numeric(24, 10)),
    )
    connection.execute(
        transactions.update().where(transactions.c.currency == reporting)
        .values(reporting_amount=transactions.c.amount, reporting_currency=reporting, fx_rate=1)
    )
    affected = [
        row[0] for row in connection.execute(
            sa.select(transactions.c.customer_id).where(transactions.c.currency != reporting).distinct()
        )
    ]
    days = sa.table("purchase_days", sa.column("customer_id", sa.String), sa.column("day", sa.Date),
                    sa.column("purchases", sa.Integer), sa.column("spend", sa.Numeric(18, 4)))
    summaries = sa.table(
        "purchase_summaries", *(sa.column(name, type_) for name, type_ in (
            ("customer_id", sa.String), ("first_purchase_at", shared.db.database.UTCDateTime(timezone=True)),
            ("last_purchase_at", shared.db.database.UTCDateTime(timezone=True)), ("purchases", sa.Integer),
            ("purchase_days", sa.Integer), ("total_spend", sa.Numeric(18, 4)), ("first_day_spend", sa.Numeric(18, 4)),
            ("total_margin", sa.Numeric(18, 4)), ("total_cost", sa.Numeric(18, 4)), ("discounted_spend", sa.Float),
            ("discount_rate", sa.Float), ("updated_at", shared.db.database.UTCDateTime(timezone=True)),
        ))
    )
    for start in range(0, len(affected), 500):
        chunk = affected[start:start + 500]
        connection.execute(days.delete().where(days.c.customer_id.in_(chunk)))
        connection.execute(summaries.delete().where(summaries.c.customer_id.in_(chunk)))
        rows = connection.execute(
            sa.select(transactions.c.customer_id, transactions.c.occurred_at, transactions.c.reporting_amount,
                      transactions.c.margin, transactions.c.cost)
            .where(transactions.c.customer_id.in_(chunk))
        ).all()
        day_rows, summary_rows = _summaries_of(rows)
        if day_rows:
            connection.execute(days.insert(), day_rows)
            connection.execute(summaries.insert(), summary_rows)


def _summaries_of(rows):
    """purchase_days and purchase_summaries rows of these transactions, counting only
    reporting amounts (NULL: a purchase with no revenue)."""

    zero = Decimal(0)
    days = defaultdict(lambda: {"purchases": 0, "spend": zero})
    summaries = {}
    now = shared.db.database.utcnow()
    for customer_id, at, reporting_amount, margin, cost in rows:
        converted = reporting_amount is not None
        spend = reporting_amount if converted else zero
        day = days[(customer_id, at.astimezone(timezone.utc).date())]
        day["purchases"] += 1
        day["spend"] += spend
        summary = summaries.setdefault(customer_id, {
            "customer_id": customer_id, "first_purchase_at": at, "last_purchase_at": at, "purchases": 0,
            "purchase_days": 0, "total_spend": zero, "first_day_spend": zero, "total_margin": None,
            "total_cost": None, "discounted_spend": 0.0, "discount_rate": None, "updated_at": now,
        })
        summary["first_purchase_at"] = min(summary["first_purchase_at"], at)
        summary["last_purchase_at"] = max(summary["last_purchase_at"], at)
        summary["purchases"] += 1
        summary["total_spend"] += spend
        if converted and margin is not None:
            summary["total_margin"] = (summary["total_margin"] or zero) + margin
        if converted and cost is not None:
            summary["total_cost"] = (summary["total_cost"] or zero) + cost
    day_rows = []
    for (customer_id, day), values in sorted(days.items()):
        summary = summaries[customer_id]
        if not summary["purchase_days"]:
            summary["first_day_spend"] = values["spend"]
        summary["purchase_days"] += 1
        day_rows.append({"customer_id": customer_id, "day": day, **values})
    return day_rows, list(summaries.values())


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_column('refunded_reporting_amount')
        batch_op.drop_column('refunded_amount')
        batch_op.drop_column('void_reason')
        batch_op.drop_column('voided_at')
        batch_op.drop_column('status')
        batch_op.drop_column('fx_rate')
        batch_op.drop_column('reporting_currency')
        batch_op.drop_column('reporting_amount')

    with op.batch_alter_table('transaction_refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_transaction_refunds_transaction')

    op.drop_table('transaction_refunds')
    op.drop_table('fx_rates')
