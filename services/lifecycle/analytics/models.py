"""Retention analytics' read model: the months each customer bought in.

One row per customer and calendar month (UTC) with purchases, not one per purchase: the
cohort matrix counts rows, so its cost follows distinct customer-months (CDNOW's 69,659
purchases are 55,379 of them; docs/benchmarks.md). `purchases` counts the month's
purchases so a void takes exactly one out (the row goes with the last); `cohort` is the
customer's first month, repeated on each of its rows so the matrix is one grouped scan of
the `(cohort, month)` index, with no join.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.lifecycle.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers


class PurchaseMonth(Base):
    __tablename__ = "purchase_months"
    __table_args__ = (
        # The cohort matrix: customers per (cohort, month), read from the index alone.
        Index("ix_purchase_months_cohort", "cohort", "month"),
        {"info": about_customers("the months the customer bought in, for retention cohorts and survival")},
    )

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Months as one number, year * 12 + month - 1 (UTC): month k of a cohort is `month - cohort`.
    month: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The customer's first month with a purchase, the same on each of its rows.
    cohort: Mapped[int] = mapped_column(Integer)
    purchases: Mapped[int] = mapped_column(Integer)
    # The month's earliest purchase: on the cohort row, where the customer's survival starts.
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
