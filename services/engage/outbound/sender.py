"""The sender: a background task of engage that sends the queued email.

It claims due messages in batches (repository.claim: one UPDATE ... RETURNING, safe with
several engage replicas), builds each one's RFC 5322 message, hands the batch to the
transport (SMTP, or `.eml` files under `<var_dir>/mail/`), and records the outcome in one
transaction with its events:

- sent: `status = "sent"`, `sent_at`; `crm.engage.message.sent`;
- refused for now (a 4xx reply, a lost connection, a file that could not be written): due
  again after the next delay of `mail_backoff_s`, the server's reply in `last_error`;
- refused for good (a 5xx reply), or refused for now on its last attempt
  (`mail_max_attempts`): `status = "failed"` with the reply; `crm.engage.message.failed`.
  A 5xx reply to RCPT refuses the address itself: it is marked undeliverable, as a hard
  bounce would (services/engage/contacts), and nothing more is queued to it until it changes;
- a marketing message whose customer withdrew marketing consent on email after it was
  queued: `status = "refused"`, `last_error = "no_consent"`, never sent.

A message that another service asked for (it has a `request_id`) also gets its
`crm.engage.delivery.reported` (sent or failed).

Marketing messages carry `List-Unsubscribe` (the customer's signed unsubscribe link) and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).

A claimed message is not due again for `mail_lease_s`: if this process dies between the
claim and the record, another sender sends it after that (it may then go out twice; a
live sender never sends one message twice).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

from sqlalchemy import Row, select

from services.engage.consent.links import unsubscribe_url
from services.engage.consent.models import ConsentState
from services.engage.contacts import service as contacts
from services.engage.outbound import repository
from services.engage.outbound.queue import WAKE_SENDER
from services.engage.outbound.transport import Mail, Outcome, Transport, transport_for
from shared.db.database import utcnow
from shared.db.uow import transaction
from shared.events.messaging import emit, emit_many
from shared.service.runtime import Runtime
from shared.settings import EngageSettings
from shared.signed_links import SignedLinks

log = logging.getLogger("valuechain.engage.sender")

ONE_CLICK = "List-Unsubscribe=One-Click"


def _header(value: str) -> str:
    """A header's value as it goes on the wire: ASCII folded at its spaces, anything else as
    RFC 2047 encoded words (folded)."""

    words = value.split()
    if not all(word.isascii() for word in words):
        return Header(" ".join(words), "utf-8").encode(linesep="\r\n")
    lines, line = [], ""
    for word in words:  # folded at spaces into lines of at most 78 characters where it can be
        if line and len(line) + 1 + len(word) > 70:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\r\n ".join([*lines, line])


def _body(text: str) -> bytes:
    """The text body, UTF-8 in quoted-printable with CRLF line ends (lines stay under 77 characters)."""

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def compose(row: Row[Any], *, from_header: str, unsubscribe: str | None, now: datetime) -> bytes:
    """The message's bytes: headers and a text body, as SMTP carries them and an .eml file holds them.

    Written by hand rather than through `email.message.EmailMessage`: the email package
    took 2-10 ms a message (its header folding), five times the rest of a send, and it
    folded the long List-Unsubscribe URL into encoded words, which mail clients do not
    read as a URL. tests/services/test_engage_mail.py parses what arrives with the email
    package."""

    headers = [
        f"From: {from_header}",
        f"To: {row.to_address}",
        f"Subject: {_header(row.subject or '')}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {row.rfc_message_id}",
    ]
    if row.in_reply_to:
        headers.append(f"In-Reply-To: {_header(row.in_reply_to)}")
    if row.references:
        headers.append(f"References: {_header(row.references)}")
    if unsubscribe is not None:
        headers.append(f"List-Unsubscribe: <{unsubscribe}>")
        headers.append(f"List-Unsubscribe-Post: {ONE_CLICK}")
    headers += [
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
    ]
    for value in (from_header, row.to_address, row.rfc_message_id, unsubscribe or ""):
        if "\n" in value or "\r" in value:
            raise ValueError(f"a header value with a line break: {value[:40]!r}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + _body(row.body or "")


def from_header(mail_from: str) -> str:
    """VALUECHAIN_ENGAGE_MAIL_FROM as a From header (a non-ASCII display name encoded)."""

    name, address = parseaddr(mail_from)
    return formataddr((name, address), charset="utf-8")


def _reply_code(error: str) -> str:
    """What a delivery report says of a failure: the server's reply codes ("550 5.1.1"), not its
    text, which may quote the address (the report's `reason` is not a personal field)."""

    codes = [word for word in error.split()[:2] if word.replace(".", "").isdigit()]
    return " ".join(codes) or error.split(":")[0][:60]


class Sender:
    """Owns the send queue of one engage process (Runtime.state.sender)."""

    def __init__(self, runtime: Runtime[Any], *, transport: Transport | None = None):
        self.runtime = runtime
        settings = runtime.settings
        assert isinstance(settings, EngageSettings)
        self.settings = settings
        self._transport = transport
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0  # messages sent by this process (the benchmark reads it)
        self.from_header = from_header(settings.mail_from)
        # Queued messages wake the sender once their transaction commits (queue.py).
        runtime.db.info[WAKE_SENDER] = self.notify

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = transport_for(self.settings)
        return self._transport

    def notify(self) -> None:
        """Look for due messages now (callable from any thread: a commit may run on one)."""

        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self.send_due()
                except Exception:  # the database or the transport: log, wait, try again
                    log.exception("sending queued mail failed")
                    claimed = 0
                if claimed >= self.settings.mail_batch:
                    continue  # more are waiting
                idle = await self._idle_for()
                try:  # asyncio.timeout: Python 3.11's wait_for can lose a cancellation (stop would hang)
                    async with asyncio.timeout(idle):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            if self._transport is not None:
                await self._transport.close()

    async def _idle_for(self) -> float:
        poll = self.settings.mail_poll_s
        try:
            async with self.runtime.db.reader() as session:
                due = await repository.next_due(session)
        except Exception:  # noqa: BLE001 - the loop's next claim logs a database that is away
            return poll
        if due is None:
            return poll
        return min(poll, max((due - utcnow()).total_seconds(), 0.0))

    async def send_due(self) -> int:
        """Claim one batch of due messages, send it and record the outcomes; how many it claimed."""

        settings = self.settings
        now = utcnow()
        async with transaction(self.runtime.db.writer) as session:
            rows = await repository.claim(
                session, now=now, lease_until=now + timedelta(seconds=settings.mail_lease_s), limit=settings.mail_batch
            )
            withdrawn = await self._consent_withdrawn(session, rows)
        if not rows:
            return 0
        links = SignedLinks.from_settings(settings)
        mails: list[Mail] = []
        ready: list[Row[Any]] = []
        unsendable: list[tuple[Row[Any], str]] = []
        for row in rows:
            if row.customer_id in withdrawn and row.purpose == "marketing":
                unsendable.append((row, "no_consent"))
                continue
            if not row.to_address or not row.from_address:
                unsendable.append((row, "no address (the customer's data was erased)"))
                continue
            unsubscribe = (
                unsubscribe_url(links, customer_id=row.customer_id, channel="email", message_id=row.id)
                if row.purpose == "marketing"
                else None
            )
            try:
                content = compose(row, from_header=self.from_header, unsubscribe=unsubscribe, now=now)
            except (ValueError, TypeError, IndexError) as exc:  # a header the email package will not write
                unsendable.append((row, f"cannot build the message: {exc}"))
                continue
            mails.append(Mail(message_id=row.id, sender=row.from_address, recipient=row.to_address, content=content))
            ready.append(row)
        outcomes = await self.transport.send(mails) if mails else []
        await self._record(list(zip(ready, outcomes, strict=True)), unsendable)
        return len(rows)

    async def _consent_withdrawn(self, session: Any, rows: Sequence[Row[Any]]) -> set[str]:
        """The customers among `rows`' marketing messages without marketing consent on email now."""

        customers = {row.customer_id for row in rows if row.purpose == "marketing"}
        if not customers:
            return set()
        granted = set(
            (
                await session.execute(
                    select(ConsentState.customer_id).where(
                        ConsentState.customer_id.in_(customers),
                        ConsentState.purpose == "marketing",
                        ConsentState.channel == "email",
                        ConsentState.granted.is_(True),
                    )
                )
            ).scalars()
        )
        return customers - granted

    async def _record(self, results: list[tuple[Row[Any], Outcome]], unsendable: list[tuple[Row[Any], str]]) -> None:
        settings = self.settings
        at = utcnow()
        sent = [row for row, outcome in results if outcome.sent]
        retries, failures, refused_addresses = [], [], []
        for row, outcome in results:
            if outcome.sent:
                continue
            error = (outcome.error or "not sent")[:2000]
            if outcome.permanent or row.attempts >= settings.mail_max_attempts:
                failures.append((row, error))
                if outcome.address_refused:
                    refused_addresses.append((row.to_address, error))
            else:
                delay = settings.mail_backoff_s[min(row.attempts, len(settings.mail_backoff_s)) - 1]
                retries.append({"m_id": row.id, "m_next": at + timedelta(seconds=delay), "m_error": error})
        async with transaction(self.runtime.db.writer) as session:
            await repository.mark_sent(session, [row.id for row in sent], at)
            await repository.mark_retry(session, retries)
            await repository.mark_failed(session, [{"m_id": row.id, "m_error": error} for row, error in failures])
            consent = [(row, reason) for row, reason in unsendable if reason == "no_consent"]
            erased = [(row, reason) for row, reason in unsendable if reason != "no_consent"]  # or unbuildable
            await repository.mark_failed(session, [{"m_id": r.id, "m_error": why} for r, why in consent], "refused")
            await repository.mark_failed(session, [{"m_id": r.id, "m_error": why} for r, why in erased])
            for address, error in refused_addresses:
                await contacts.mark_undeliverable(session, address, error, at)
            emit_many(
                session,
                "crm.engage.message.sent",
                [
                    {
                        "id": row.id,
                        "conversation_id": row.conversation_id,
                        "customer_id": row.customer_id,
                        "channel": "email",
                        "purpose": row.purpose,
                        "subject": row.subject,
                        "request_id": row.request_id,
                        "sent_at": at,
                    }
                    for row in sent
                ],
                [row.customer_id for row in sent],
            )
            for row, error in [*failures, *erased]:
                emit(
                    session,
                    "crm.engage.message.failed",
                    {
                        "id": row.id,
                        "conversation_id": row.conversation_id,
                        "customer_id": row.customer_id,
                        "channel": "email",
                        "status": "failed",
                        "reason": error,
                        "request_id": row.request_id,
                        "failed_at": at,
                    },
                    subject=row.customer_id,
                )
            reports = [
                *((row, "sent", None) for row in sent),
                *((row, "failed", _reply_code(error)) for row, error in [*failures, *erased]),
                *((row, "refused", "no_consent") for row, _ in consent),
            ]
            requested = [(row, outcome, reason) for row, outcome, reason in reports if row.request_id]
            emit_many(
                session,
                "crm.engage.delivery.reported",
                [
                    {
                        "request_id": row.request_id,
                        "customer_id": row.customer_id,
                        "channel": "email",
                        "outcome": outcome,
                        "reason": reason,
                        "message_id": row.id,
                        "source_kind": row.source_kind or "",
                        "source_id": row.source_id or "",
                        "reported_at": at,
                    }
                    for row, outcome, reason in requested
                ],
                [row.customer_id for row, _, _ in requested],
            )
        self.sent += len(sent)


async def start(runtime: Runtime[Any]) -> None:
    """engage's start-up hook: the sender runs as long as the service does."""

    runtime.start_leased("mail-sender", runtime.state.sender.run)  # one replica sends; another takes over
