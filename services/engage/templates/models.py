"""engage's message templates: Jinja text with merge fields (rendering.py), per channel and purpose."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime


class MessageTemplate(Base):
    """Staff write templates; nothing in one is about a customer until it is rendered."""

    __tablename__ = "message_templates"
    __table_args__ = (Index("ix_message_templates_name", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))  # MessageChannel
    purpose: Mapped[str] = mapped_column(String(10))  # marketing | service
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # The merge fields it names, space-separated and sorted (what a sender must supply).
    fields: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
