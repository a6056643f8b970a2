"""Offer templates: what a business offers, with its validity, budget, caps and cost.
The offers issued from them are rows of `offers` (services/value/models.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base
from shared.db.database import UTCDateTime


class OfferTemplate(Base):
    __tablename__ = "offer_templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # percent_off | amount_off | free_item | points
    kind: Mapped[str] = mapped_column(String(20))
    # Written by staff for every customer: no personal data.
    title: Mapped[str] = mapped_column(String(200))
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(5, 2, asdecimal=True))
    amount_off: Mapped[Decimal | None] = mapped_column(Numeric(12, 2, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(String(3))
    free_item: Mapped[str | None] = mapped_column(String(200))
    points: Mapped[int | None] = mapped_column(Integer)
    # What a customer pays in lifecycle's loyalty points for this offer (a redemption); NULL: not sold for points.
    points_price: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Each offer expires this many days after issue (and no later than valid_until).
    valid_days: Mapped[int | None] = mapped_column(Integer)
    # At most this many offers issued in total; NULL: no budget.
    budget: Mapped[int | None] = mapped_column(Integer)
    # At most this many offers of the template per customer; NULL: no cap.
    per_customer_cap: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 2, asdecimal=True))
    # Offers issued so far: the budget is enforced on it with one conditional UPDATE.
    issued: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
