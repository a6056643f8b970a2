"""Queueing an outbound email: the one way a message enters the send queue.

Staff's replies in a conversation, staff's marketing mail and the messages value asks for
all come here. A queued message is a `messages` row with `status = "queued"` and
`next_attempt_at`; the sender (services/engage/outbound) takes due rows, sends them and
marks them `sent` or, after its retries, `failed`. A message is never queued to a
customer without an address, to an address that bounced hard, or, for marketing, without
consent or past the channel's frequency cap (services/engage/consent/rules.py).
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.utils import make_msgid, parseaddr

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent import rules
from services.engage.contacts import service as contacts
from services.engage.contacts.models import Contact
from services.engage.conversations.models import Message
from shared.db.ids import uuid7
from shared.http.errors import Conflict, InvalidRequest
from shared.settings import EngageSettings, current_settings


def sender_address() -> Address:
    """The From of outbound mail (VALUECHAIN_ENGAGE_MAIL_FROM)."""

    name, address = parseaddr(current_settings(EngageSettings).mail_from)
    username, _, domain = address.partition("@")
    return Address(display_name=name, username=username, domain=domain)


class ContactPending(InvalidRequest):
    """The customer's contact details have not reached engage yet.

    identify's created event reaches engage's contacts read model through its own consumer,
    and a request naming the customer (value's message requests, the API) may overtake it. A
    missing contact row means "not yet known", never "no address": the API answers 422 naming
    `body.customer_id` (as for a customer not known at all), and a consumer lets the error
    fail its event, which is retried with back-off until the contact has arrived (or, after
    `consumer_max_deliver` attempts, parked as a dead letter operators see)."""

    def __init__(self, customer_id: str):
        message = f"customer {customer_id}'s contact details have not reached engage yet"
        super().__init__([{"field": "body.customer_id", "message": message, "type": "value_error"}])


async def deliverable(session: AsyncSession, *, customer_id: str, purpose: str, now: datetime) -> Contact:
    """The customer's contact if an email for `purpose` may be queued to them now; else 409
    `no_address`, `undeliverable`, `no_consent` or `frequency_cap`, or ContactPending."""

    contact = await contacts.contact_of(session, customer_id)
    if contact is None:
        raise ContactPending(customer_id)
    if not contact.email:
        raise Conflict(f"customer {customer_id} has no email address", error="no_address")
    if contact.email_undeliverable_at is not None:
        raise Conflict(
            f"customer {customer_id}'s email address bounced ({contact.email_undeliverable_reason}); "
            "nothing is sent to it until it changes",
            error="undeliverable",
        )
    if purpose == "marketing":
        await rules.check_marketing(session, customer_id=customer_id, channel="email", now=now)
    return contact


async def queue_email(
    session: AsyncSession,
    *,
    customer_id: str,
    subject: str,
    body: str,
    purpose: str,
    now: datetime,
    conversation_id: str | None = None,
    template_id: str | None = None,
    request_id: str | None = None,
    source_kind: str | None = None,
    source_id: str | None = None,
    author_id: str | None = None,
    message_id: str | None = None,
    checked: Contact | None = None,
) -> Message:
    """The queued message; 409 `no_address`, `undeliverable`, `no_consent` or `frequency_cap`.

    `message_id`: the id to give it, when the caller needs it before (an unsubscribe link
    in the body names its message). `checked`: the contact `deliverable()` just answered
    for this customer and purpose in this transaction (its checks are not made twice).
    The sender is woken once the transaction commits.
    """

    contact = checked or await deliverable(session, customer_id=customer_id, purpose=purpose, now=now)
    message = Message(
        id=message_id or uuid7(),
        conversation_id=conversation_id,
        customer_id=customer_id,
        channel="email",
        direction="outbound",
        purpose=purpose,
        status="queued",
        subject=subject,
        body=body,
        from_address=sender_address().addr_spec,
        to_address=contact.email,
        rfc_message_id=make_msgid(domain=sender_address().domain or "localhost"),
        template_id=template_id,
        request_id=request_id,
        source_kind=source_kind,
        source_id=source_id,
        author_id=author_id,
        attempts=0,
        next_attempt_at=now,
        occurred_at=now,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    wake_sender_after_commit(session)
    return message


# The running sender's wake-up (services/engage/outbound/sender.py puts it in the database's
# session info): a queued message goes out at once instead of at the sender's next poll.
WAKE_SENDER = "wake_sender"


def wake_sender_after_commit(session: AsyncSession) -> None:
    wake = session.info.get(WAKE_SENDER)
    if wake is None or session.info.get("sender_woken"):
        return
    session.info["sender_woken"] = True

    def woken(_session: object) -> None:
        session.info.pop("sender_woken", None)
        wake()

    event.listen(session.sync_session, "after_commit", woken, once=True)
