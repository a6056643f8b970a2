"""Where outbound mail goes: an SMTP server (VALUECHAIN_SMTP_URL) or, when none is set,
one `.eml` file per message under `<var_dir>/mail/` (the file back end).

A transport takes a batch of ready-made messages (their bytes, envelope sender and
recipient) and answers one `Outcome` per message: sent, or refused for now (a 4xx reply,
a lost connection: worth another attempt) or for good (a 5xx reply). It never raises for
one message's trouble.

The SMTP transport keeps `mail_connections` connections open between batches and sends a
batch's messages over all of them at once (aiosmtplib has no pipelining: each message is
MAIL, RCPT, DATA round trips, so more connections is what keeps a server busy). A
connection that dropped is opened again once per message before the message counts as
refused for now; a connection that cannot be opened leaves the rest of its share of the
batch refused for now too (a server that is down costs one timeout, not one per message).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from shared.settings import EngageSettings


@dataclass(frozen=True)
class Mail:
    message_id: str  # engage's id: the file back end's file name
    sender: str  # the envelope's MAIL FROM
    recipient: str  # RCPT TO
    content: bytes  # the RFC 5322 message, CRLF line ends


@dataclass(frozen=True)
class Outcome:
    sent: bool
    # The server's reply (or what went wrong) when not sent.
    error: str | None = None
    # Not sent, and another attempt will not change that (a 5xx reply).
    permanent: bool = False
    # A 5xx reply to RCPT: the server refused the address itself (a hard bounce).
    address_refused: bool = False


SENT = Outcome(sent=True)


class Transport(Protocol):
    name: str

    async def send(self, mails: list[Mail]) -> list[Outcome]: ...

    async def close(self) -> None: ...


class FileTransport:
    """Each message as `<directory>/<message id>.eml` (written whole, then renamed into place)."""

    name = "file"

    def __init__(self, directory: Path):
        self.directory = directory

    async def send(self, mails: list[Mail]) -> list[Outcome]:
        return await asyncio.to_thread(self._write, mails)

    def _write(self, mails: list[Mail]) -> list[Outcome]:
        outcomes = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [Outcome(sent=False, error=f"cannot write {self.directory}: {exc}")] * len(mails)
        for mail in mails:
            final = self.directory / f"{mail.message_id}.eml"
            partial = final.with_suffix(".eml.partial")
            try:
                partial.write_bytes(mail.content)
                os.replace(partial, final)
            except OSError as exc:
                outcomes.append(Outcome(sent=False, error=f"cannot write {final}: {exc}"))
            else:
                outcomes.append(SENT)
        return outcomes

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class SmtpServer:
    """An SMTP URL read: smtp://[user:password@]host[:port][?starttls=true&verify=false],
    smtps://... for TLS from the first byte (port 465 by default)."""

    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None
    verify: bool

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("VALUECHAIN_SMTP_URL must read smtp://host[:port] or smtps://host[:port]")
        query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls", "verify"}
        if unknown:
            raise ValueError(f"VALUECHAIN_SMTP_URL: unknown options {sorted(unknown)} (starttls, verify)")
        use_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            use_tls=use_tls,
            start_tls=query.get("starttls", "false") in ("true", "1", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            verify=query.get("verify", "true") not in ("false", "0", "no"),
        )


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


def _outcome(exc: Exception) -> Outcome:
    """What a failed sendmail means for the message."""

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        if refused is None:
            return Outcome(sent=False, error=str(exc))
        permanent = refused.code >= 500
        return Outcome(sent=False, error=_reply(refused), permanent=permanent, address_refused=permanent)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Outcome(sent=False, error=_reply(exc), permanent=500 <= exc.code < 600)
    return Outcome(sent=False, error=f"{type(exc).__name__}: {exc}".strip())


class _Unreachable(Exception):
    """The server could not be reached: no use trying the next messages over this connection now."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.error)
        self.outcome = outcome


class SmtpTransport:
    name = "smtp"

    def __init__(self, server: SmtpServer, *, connections: int, timeout_s: float):
        self.server = server
        self.timeout_s = timeout_s
        self._clients: list[aiosmtplib.SMTP | None] = [None] * connections

    def _client(self) -> aiosmtplib.SMTP:
        server = self.server
        context = None
        if (server.use_tls or server.start_tls) and not server.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=server.hostname,
            port=server.port,
            use_tls=server.use_tls,
            start_tls=server.start_tls if not server.use_tls else False,
            username=server.username,
            password=server.password,
            validate_certs=server.verify,
            tls_context=context,
            timeout=self.timeout_s,
        )

    async def _connected(self, slot: int) -> aiosmtplib.SMTP:
        client = self._clients[slot]
        if client is None or not client.is_connected:
            client = self._client()
            await client.connect()
            self._clients[slot] = client
        return client

    async def _drop(self, slot: int) -> None:
        client, self._clients[slot] = self._clients[slot], None
        if client is not None:
            client.close()

    async def send(self, mails: list[Mail]) -> list[Outcome]:
        outcomes: list[Outcome] = [SENT] * len(mails)
        slots = len(self._clients)

        async def worker(slot: int) -> None:
            mine = range(slot, len(mails), slots)
            for number, index in enumerate(mine):
                try:
                    outcomes[index] = await self._send_one(slot, mails[index])
                except _Unreachable as unreachable:  # the rest of this share waits for the next attempt
                    for rest in mine[number:]:
                        outcomes[rest] = unreachable.outcome
                    return

        await asyncio.gather(*(worker(slot) for slot in range(min(slots, len(mails)))))
        return outcomes

    async def _send_one(self, slot: int, mail: Mail) -> Outcome:
        for attempt in range(2):  # a connection the server closed while idle gets one new try
            try:
                client = await self._connected(slot)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._drop(slot)
                # Whatever it answered, the messages are not at fault: each is tried again later.
                raise _Unreachable(Outcome(sent=False, error=_outcome(exc).error)) from None
            try:
                await client.sendmail(mail.sender, [mail.recipient], mail.content)
                return SENT
            except aiosmtplib.SMTPRecipientsRefused as exc:
                return _outcome(exc)
            except aiosmtplib.SMTPServerDisconnected as exc:
                await self._drop(slot)
                if attempt:
                    return _outcome(exc)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code in (421,):  # the server is closing the connection
                    await self._drop(slot)
                return _outcome(exc)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._drop(slot)
                return _outcome(exc)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for slot, client in enumerate(self._clients):
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), timeout=2.0)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
            self._clients[slot] = None


def transport_for(settings: EngageSettings) -> Transport:
    """The SMTP server of VALUECHAIN_SMTP_URL, else the file back end under <var_dir>/mail."""

    if settings.smtp_url is None:
        return FileTransport(settings.var_dir / "mail")
    return SmtpTransport(
        SmtpServer.parse(settings.smtp_url.get_secret_value()),
        connections=settings.mail_connections,
        timeout_s=settings.mail_timeout_s,
    )
