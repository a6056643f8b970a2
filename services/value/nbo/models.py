"""What next best offer learns from: per offer template and customer segment, how many
offers were issued and how many redeemed. Kept as counts, moved in the transactions that
issue and redeem offers, so ranking a customer's offers reads a few rows instead of
counting a million offers."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.value.models import Base

# The segment of a customer identify has not scored yet.
UNSCORED = ""


class ResponseCount(Base):
    __tablename__ = "offer_response_counts"

    template_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The customer's RFM segment when the offer was issued; UNSCORED for none.
    segment: Mapped[str] = mapped_column(String(50), primary_key=True)
    issued: Mapped[int] = mapped_column(Integer, default=0)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)
