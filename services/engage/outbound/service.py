"""Outbound email's rules: render a message for one customer and queue it.

Staff's `POST /v1/emails` and value's `crm.value.message.requested` both come here. The
subject and body come from a template or are the caller's own, and are rendered with the
customer's merge fields (templates/rendering.py) once, when queued: the stored text is
what the customer gets. A message that cannot be rendered or may not be sent is refused
before anything is written:

- `unknown_template`, `template_channel`, `template_purpose`, `missing_field`,
  `bad_template`: a `Refusal` (POST /v1/emails answers 422 naming the field);
- `no_address`, `undeliverable`, `no_consent`, `frequency_cap`: queue.py's 409s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent.links import unsubscribe_url
from services.engage.conversations.models import Message
from services.engage.models import aliases, known_customers
from services.engage.outbound.queue import deliverable, queue_email
from services.engage.templates import repository as templates
from services.engage.templates.rendering import (
    CALLER_FIELDS,
    UNSUBSCRIBE_FIELD,
    TemplateError,
    check,
    engage_values,
    fields_named,
    render,
    with_unsubscribe_footer,
)
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.http.errors import NotFound, field_error
from shared.settings import EngageSettings, current_settings
from shared.signed_links import SignedLinks


class Refusal(Exception):
    """A message that cannot be made: `code` is the refusal's reason, `field` the request's field at fault."""

    def __init__(self, code: str, detail: str, field: str):
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field


async def compose_and_queue(
    session: AsyncSession,
    *,
    customer_id: str,
    purpose: str,
    template_id: str | None,
    subject: str | None,
    body: str | None,
    fields: Mapping[str, str],
    now: datetime,
    request_id: str | None = None,
    source_kind: str | None = None,
    source_id: str | None = None,
    author_id: str | None = None,
) -> Message:
    """The queued message; `Refusal` or queue.py's 409 `Conflict` when there is none."""

    if template_id is not None:
        template = await templates.get(session, template_id)
        if template is None:
            raise Refusal("unknown_template", f"no template {template_id}", "template_id")
        if template.channel != "email":
            raise Refusal(
                "template_channel", f"template {template_id} is for {template.channel}, not email", "template_id"
            )
        if template.purpose != purpose:
            raise Refusal(
                "template_purpose", f"template {template_id} is a {template.purpose} template, not {purpose}", "purpose"
            )
        subject, body = template.subject, template.body
    else:
        for name, source in (("subject", subject), ("body", body)):
            try:
                check(source or "")
            except TemplateError as exc:
                raise Refusal("bad_template", str(exc), name) from None
    contact = await deliverable(session, customer_id=customer_id, purpose=purpose, now=now)
    message_id = uuid7()
    link = None
    if purpose == "marketing":
        links = SignedLinks.from_settings(current_settings(EngageSettings))
        link = unsubscribe_url(links, customer_id=customer_id, channel="email", message_id=message_id)
    values = {
        **{key: value for key, value in fields.items() if key in CALLER_FIELDS},
        **engage_values(name=contact.name, email=contact.email, unsubscribe_link=link),
    }
    try:
        rendered_subject = " ".join(render(subject or "", values).split())
        rendered_body = render(body or "", values)
    except TemplateError as exc:
        raise Refusal("missing_field", str(exc), "fields") from None
    if link is not None and template_id is None and UNSUBSCRIBE_FIELD not in fields_named(body or ""):
        rendered_body = with_unsubscribe_footer(rendered_body, link)
    return await queue_email(
        session,
        customer_id=customer_id,
        subject=rendered_subject[:300],
        body=rendered_body,
        purpose=purpose,
        now=now,
        template_id=template_id,
        request_id=request_id,
        source_kind=source_kind,
        source_id=source_id,
        author_id=author_id,
        message_id=message_id,
        checked=contact,
    )


async def send_email(*, session: AsyncSession, data: Any) -> dict[str, Any]:
    """POST /v1/emails: the queued message (202); 422 naming the field, or a 409."""

    await aliases.refuse_merged(session, data.customer_id)
    if not await known_customers.contains(session, data.customer_id):
        raise field_error("body.customer_id", f"no customer {data.customer_id}")
    # Known here but its contact details not yet in (another consumer): compose_and_queue's
    # deliverable() answers 422 ContactPending, as for a customer not known at all.
    try:
        message = await compose_and_queue(
            session,
            customer_id=data.customer_id,
            purpose=data.purpose,
            template_id=data.template_id,
            subject=data.subject,
            body=data.body,
            fields=data.fields,
            now=utcnow(),
            author_id=data.author_id,
        )
    except Refusal as refused:
        raise field_error(f"body.{refused.field}", refused.detail) from None
    return out(message)


def out(message: Message) -> dict[str, Any]:
    return {column: getattr(message, column) for column in _OUT}


_OUT = (
    "id",
    "customer_id",
    "conversation_id",
    "purpose",
    "status",
    "subject",
    "body",
    "to_address",
    "rfc_message_id",
    "template_id",
    "request_id",
    "source_kind",
    "source_id",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "sent_at",
)


async def get_email(*, session: AsyncSession, message_id: str) -> dict[str, Any]:
    message = await session.scalar(
        select(Message).where(Message.id == message_id, Message.channel == "email", Message.direction == "outbound")
    )
    if message is None:
        raise NotFound(f"no outbound email {message_id}")
    return out(message)
