"""engage's conversations: threads with a customer and the messages in them, on every channel.

A conversation holds messages, inbound or outbound, on one channel. Email messages are
really sent (services/engage/outbound) and received (POST /v1/channels/email/inbound);
the other channels' messages are recorded as they happened (POST /v1/messages).

An inbound email from an address engage cannot match to a customer is kept with no
customer and no conversation (`status = "unmatched"`) until someone links it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.engage.models import Base
from shared.db.database import UTCDateTime
from shared.privacy.classification import about_customers, personal

# A message's life: recorded (a logged channel), received (inbound), unmatched (inbound, no
# customer yet), queued → sent | failed (outbound email after retries), bounced (a DSN came
# back for it), refused (consent, frequency cap or an undeliverable address said no).
MESSAGE_STATUSES = ("recorded", "received", "unmatched", "queued", "sent", "failed", "bounced", "refused")
CONVERSATION_STATUSES = ("open", "pending", "closed")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_customer", "customer_id", "last_message_at", "id"),
        Index("ix_conversations_status", "status", "last_message_at", "id"),
        {"info": about_customers("the customer's threads with staff: their subject, state and who handles them")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(String(300), info=personal("free_text"))
    status: Mapped[str] = mapped_column(String(10))  # CONVERSATION_STATUSES
    # An employee stakeholder from network.
    assignee_id: Mapped[str | None] = mapped_column(String(36))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The first outbound message after the customer's first inbound one.
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation", "conversation_id", "occurred_at", "id"),
        Index("ix_messages_customer", "customer_id", "occurred_at", "id"),
        # The outbound queue: due messages in order (services/engage/outbound).
        Index("ix_messages_queue", "status", "next_attempt_at", "id"),
        # Threading inbound replies by In-Reply-To/References, and refusing a replayed inbound message.
        Index("ix_messages_rfc_id", "rfc_message_id"),
        # Frequency caps: a customer's marketing messages on a channel, newest last.
        Index("ix_messages_marketing", "customer_id", "channel", "purpose", "created_at"),
        # One message per request of another service, however often the request is delivered.
        Index("ix_messages_request", "request_id", unique=True),
        {"info": about_customers("what staff and the customer wrote each other, on every channel")},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Null while an inbound email is unmatched.
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    customer_id: Mapped[str | None] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(10))  # inbound | outbound
    # marketing (needs consent, counts against caps) | service
    purpose: Mapped[str] = mapped_column(String(10), default="service")
    status: Mapped[str] = mapped_column(String(10))  # MESSAGE_STATUSES
    subject: Mapped[str | None] = mapped_column(String(300), info=personal("free_text"))
    body: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    # The addresses the message went from and to (email, phone number, handle).
    from_address: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    to_address: Mapped[str | None] = mapped_column(String(320), info=personal("email"))
    # Email headers: Message-ID (ours for outbound), In-Reply-To and References (inbound).
    rfc_message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str | None] = mapped_column(String(36))
    # Who asked for it when another service did (crm.value.message.requested).
    request_id: Mapped[str | None] = mapped_column(String(36))
    source_kind: Mapped[str | None] = mapped_column(String(20))
    source_id: Mapped[str | None] = mapped_column(String(36))
    # The sender's retries (outbound email).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The server's reply to a failed send, or the DSN's diagnostic: it may quote the address.
    last_error: Mapped[str | None] = mapped_column(Text, info=personal("free_text"))
    # An employee stakeholder from network who wrote it (outbound).
    author_id: Mapped[str | None] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Attachment(Base):
    """A file that came with a message: kept as bytes with its size and declared type, and
    only ever handed back as a download (never executed or rendered)."""

    __tablename__ = "attachments"
    __table_args__ = (
        Index("ix_attachments_message", "message_id", "id"),
        {
            "info": about_customers(
                "files the customer or staff sent with a message",
                column="message_id",
                via=("messages", "customer_id"),
                erase="delete",
            )
        },
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), ForeignKey("messages.id", ondelete="CASCADE"))
    filename: Mapped[str | None] = mapped_column(String(255), info=personal("free_text"))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal("free_text"))


class Employee(Base):
    """network's employee stakeholders (crm.network.stakeholder.created with kind employee): the
    people a conversation may be assigned to, and who may write a message. Ids only: engage
    needs to know that an employee exists, not who they are."""

    __tablename__ = "employees"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
