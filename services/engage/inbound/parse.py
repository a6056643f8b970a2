"""Reading a raw RFC 5322 message as a mail provider's inbound webhook posts it (pure: no database).

Parsed with the standard library's `email` package and its modern policy
(`email.policy.default`). A message engage cannot use is refused with the reason
(`Malformed`): no From address, no headers at all, or neither a text body nor an attachment.
A delivery status notification (RFC 3464: multipart/report; report-type=delivery-status) is
read as a `Bounce`, not as a customer's message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError, MissingHeaderBodySeparatorDefect
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime

# One Message-ID in a header (In-Reply-To, References): `<...>`.
_MSG_ID = re.compile(r"<[^<>\s]+>")
SUBJECT_MAX = 300
HEADER_MAX = 998


class Malformed(ValueError):
    """A message engage cannot store, and why (answered as 422)."""


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class ParsedMail:
    from_address: str
    to_address: str | None
    subject: str | None
    body: str | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    date: datetime | None
    attachments: list[ParsedAttachment] = field(default_factory=list)

    @property
    def thread_ids(self) -> list[str]:
        """The Message-IDs this one answers, the nearest first (In-Reply-To, then References newest first)."""

        ids = [self.in_reply_to] if self.in_reply_to else []
        return ids + [i for i in reversed(self.references) if i not in ids]


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification: which message bounced, for whom, and how hard."""

    original_message_ids: list[str]
    recipient: str | None
    action: str | None
    status: str | None
    diagnostic: str | None

    @property
    def hard(self) -> bool:
        """A permanent failure: status 5.x.x, or `Action: failed` with no status."""

        if self.status:
            return self.status.startswith("5")
        return (self.action or "").lower() == "failed"

    @property
    def failed(self) -> bool:
        """Whether it reports a failure at all (not `delayed`, `delivered`, `relayed` or `expanded`)."""

        return (self.action or "failed").lower() == "failed"


def parse(raw: bytes) -> ParsedMail | Bounce:
    if not raw.strip():
        raise Malformed("the body is empty: post the raw RFC 5322 message")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not isinstance(message, EmailMessage):  # pragma: no cover - policy.default makes EmailMessage
        raise Malformed("not an email message")
    if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in message.defects) and not len(message):
        raise Malformed("no header section: not an RFC 5322 message")
    if message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type") or "").lower() == "delivery-status"
    ):
        return _bounce(message)
    sender = _first_address(message, "From")
    if sender is None:
        raise Malformed("no From address: an inbound message must say who sent it")
    body = _body_text(message)
    attachments = _attachments(message)
    if not body and not attachments:
        raise Malformed("no body: neither a text part nor an attachment")
    subject = _header(message, "Subject")
    return ParsedMail(
        from_address=sender,
        to_address=_first_address(message, "To"),
        subject=subject[:SUBJECT_MAX] if subject else None,
        body=body,
        message_id=_one_id(_header(message, "Message-ID")),
        in_reply_to=_one_id(_header(message, "In-Reply-To")),
        references=_MSG_ID.findall(_header(message, "References") or ""),
        date=_date(message),
        attachments=attachments,
    )


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise Malformed(f"the {name} header cannot be read: {exc}") from None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _first_address(message: EmailMessage, name: str) -> str | None:
    try:
        header = message.get(name)
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise Malformed(f"the {name} header cannot be read: {exc}") from None
    for address in addresses:
        if address.username and address.domain:
            return str(address.addr_spec)[:320]
    return None


def _one_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _MSG_ID.search(value)
    return (found.group() if found else value.strip())[:HEADER_MAX] or None


def _date(message: EmailMessage) -> datetime | None:
    try:
        value = message.get("Date")
        at = getattr(value, "datetime", None) or (parsedate_to_datetime(str(value)) if value else None)
    except (HeaderParseError, ValueError, TypeError, IndexError):
        return None
    if at is None or at.tzinfo is None:
        return None
    return at.astimezone(UTC)


def _body_text(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    try:
        text = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    if not isinstance(text, str):
        return None
    # Kept as text, never rendered: an HTML-only mail keeps its markup as characters.
    text = text.replace("\x00", "").strip()
    return text or None


def _attachments(message: EmailMessage) -> list[ParsedAttachment]:
    found = []
    for part in message.iter_attachments():
        if not isinstance(part, EmailMessage) or part.is_multipart():
            continue
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            content = part.as_bytes()  # an attached message (message/rfc822) as it came
        filename = part.get_filename()
        found.append(
            ParsedAttachment(
                filename=filename.replace("\x00", "")[:255] if filename else None,
                content_type=part.get_content_type()[:255],
                content=content,
            )
        )
    return found


def _bounce(message: EmailMessage) -> Bounce:
    recipient = action = status = diagnostic = None
    ids: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = _messages(part.get_payload())
            for block in blocks[1:]:
                # The first recipient that failed speaks for the report.
                if recipient is None or (action or "").lower() != "failed":
                    recipient = _dsn_address(block.get("Final-Recipient") or block.get("Original-Recipient"))
                    action = _text(block.get("Action"))
                    status = _text(block.get("Status"))
                    diagnostic = _text(block.get("Diagnostic-Code"))
            if blocks:
                ids += _MSG_ID.findall(str(blocks[0].get("Original-Message-ID") or ""))
        elif kind == "text/rfc822-headers":
            headers = HeaderParser(policy=policy.default).parsestr(str(part.get_content()))
            ids += _MSG_ID.findall(str(headers.get("Message-ID") or ""))
        elif kind == "message/rfc822":
            for original in _messages(part.get_payload())[:1]:
                ids += _MSG_ID.findall(str(original.get("Message-ID") or ""))
    ids += _MSG_ID.findall(str(message.get("In-Reply-To") or ""))
    return Bounce(
        original_message_ids=list(dict.fromkeys(ids)),
        recipient=recipient,
        action=action,
        status=status.split()[0] if status else None,
        diagnostic=diagnostic[:2000] if diagnostic else None,
    )


def _messages(payload: object) -> list[Message]:
    """The header blocks of a message/delivery-status part, the message of a message/rfc822 one."""

    return [item for item in payload if isinstance(item, Message)] if isinstance(payload, list) else []


def _text(value: object) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


def _dsn_address(value: object) -> str | None:
    """`rfc822; ada@example.com` → `ada@example.com`."""

    text = _text(value)
    if not text:
        return None
    return text.partition(";")[2].strip() or text if ";" in text else text
