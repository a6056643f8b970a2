"""engage's outbound email against real things: a real SMTP server in the test process
(aiosmtpd), the file back end under var/mail, templates refused when saved, value's message
requests answered with delivery reports, and several senders sharing one queue."""

from __future__ import annotations

import asyncio
import email
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy

import nats
import pytest
from aiosmtpd.controller import Controller

from services.engage.consent import rules
from services.engage.consent.links import read_unsubscribe
from services.engage.contacts import service as contacts
from services.engage.models import known_customers
from services.engage.outbound.queue import queue_email
from services.engage.outbound.sender import Sender
from services.engage.outbound.transport import SENT as SENT_OUTCOME
from shared.db.database import Database
from shared.db.uow import transaction
from shared.signed_links import SignedLinks
from tests.services.test_engage import catalog_event, publish, stream_events
from tests.support import free_port, wait_until

# --- a real SMTP server -----------------------------------------------------------------


@dataclass
class Inbox:
    """aiosmtpd's handler: keeps what it received; answers RCPT with `rcpt_replies` first, in turn."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(content, policy=policy.default) for _, _, content in self.received]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


# --- helpers ----------------------------------------------------------------------------

FAST = {"mail_poll_s": 0.05, "mail_backoff_s": (0.05,)}


async def _customer(identify, engage, **body) -> dict:
    response = await identify.client.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text
    customer = response.json()

    async def known() -> bool:
        async with engage.runtime.db.reader() as session:
            return await contacts.contact_of(session, customer["id"]) is not None

    await wait_until(known, what="engage knows the customer")
    return customer


async def _consent(engage, customer_id: str, granted: bool = True) -> None:
    now = datetime.now(UTC)
    async with transaction(engage.runtime.db.writer) as session:
        await rules.record(
            session,
            customer_id=customer_id,
            purpose="marketing",
            channel="email",
            granted=granted,
            legal_basis="consent",
            source="api",
            notice_version="2026-01",
            changed_at=now,
            now=now,
        )


async def _email_when(engage, message_id: str, *statuses: str) -> dict:
    latest: dict = {}

    async def there() -> bool:
        latest.update((await engage.client.get(f"/v1/emails/{message_id}")).json())
        return latest.get("status") in statuses

    await wait_until(there, what=f"email {message_id} {statuses}")
    return latest


async def _read_stream(url: str, subject: str, count: int, *, settle: bool = False) -> list[dict]:
    """The events on `subject`, once there are `count` (with `settle`: exactly `count`, after a second look)."""

    seen: list[dict] = []

    async def enough() -> bool:
        seen[:] = await stream_events(url, subject)
        return len(seen) >= count

    await wait_until(enough, timeout=30, what=f"{count} events on {subject}")
    if settle:
        seen[:] = await stream_events(url, subject)
        assert len(seen) == count, f"{len(seen)} events on {subject}, not {count}"
    return seen


def _text(message) -> str:
    """The text body, with the wire's CRLF line ends read as line feeds."""

    return message.get_content().replace("\r\n", "\n")


def _field_error(response) -> tuple[str, str]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error["field"], error["message"]


MARKETING = {
    "name": "Spring offer",
    "purpose": "marketing",
    "subject": "{{ first_name }}, your code {{ offer_code }}",
    "body": "Hi {{ name }},\n\nUse {{ offer_code }} for {{ offer_title }}.\n\nUnsubscribe: {{ unsubscribe_link }}\n",
}


# --- sending through SMTP -----------------------------------------------------------------


async def test_a_marketing_email_from_a_template_reaches_the_smtp_server_with_its_headers(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada Lovelace")
    await _consent(engage, ada["id"])

    saved = await engage.client.post("/v1/templates", json=MARKETING)
    assert saved.status_code == 201, saved.text
    template = saved.json()
    assert template["fields"] == ["first_name", "name", "offer_code", "offer_title", "unsubscribe_link"]

    response = await engage.client.post(
        "/v1/emails",
        json={
            "customer_id": ada["id"],
            "purpose": "marketing",
            "template_id": template["id"],
            "fields": {"offer_code": "SPRING10", "offer_title": "10% off"},
        },
    )
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued" and queued["subject"] == "Ada, your code SPRING10"
    sent = await _email_when(engage, queued["id"], "sent")
    assert sent["attempts"] == 1 and sent["sent_at"] and sent["last_error"] is None

    ((mail_from, rcpt_tos, _),), (message,) = inbox.received, inbox.messages()
    assert (mail_from, rcpt_tos) == ("crm@valuechain.localhost", ["ada@example.com"])
    assert message["From"] == "Value Chain CRM <crm@valuechain.localhost>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Ada, your code SPRING10"
    assert message["Message-ID"] == queued["rfc_message_id"]
    assert message["Date"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # On the wire as RFC 2369 has it: the URL in angle brackets, not folded into encoded words.
    assert f"\r\nList-Unsubscribe: <{message['List-Unsubscribe'].strip('<>')}>\r\n".encode() in inbox.received[0][2]
    header_link = message["List-Unsubscribe"].strip("<>")
    links = SignedLinks.from_settings(engage.settings)
    assert header_link.startswith(f"{engage.settings.public_base_url}/v1/unsubscribe/")
    assert read_unsubscribe(links, header_link.rsplit("/", 1)[1]) == (ada["id"], "email", queued["id"])
    body = _text(message)
    assert body.startswith("Hi Ada Lovelace,\n\nUse SPRING10 for 10% off.\n\nUnsubscribe: http")
    body_link = body.split("Unsubscribe: ")[1].strip()
    assert read_unsubscribe(links, body_link.rsplit("/", 1)[1]) == (ada["id"], "email", queued["id"])

    # A service email: no unsubscribe header; a one-off text may name merge fields too.
    service = await engage.client.post(
        "/v1/emails",
        json={"customer_id": ada["id"], "purpose": "service", "subject": "Your order", "body": "Hello {{ name }}"},
    )
    assert service.status_code == 202, service.text
    await _email_when(engage, service.json()["id"], "sent")
    plain = inbox.messages()[1]
    assert plain["List-Unsubscribe"] is None and _text(plain).strip() == "Hello Ada Lovelace"

    events = await _read_stream(suite.nats.url, "crm.engage.message.sent", 2, settle=True)
    assert [(e["data"]["id"], e["data"]["purpose"]) for e in events] == [
        (queued["id"], "marketing"),
        (service.json()["id"], "service"),
    ]


async def test_a_one_off_marketing_email_gets_the_unsubscribe_link_appended_and_refusals_write_nothing(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    nobody = await _customer(identify, engage, name="No Address", external_id="no-address")
    mail = {"customer_id": ada["id"], "purpose": "marketing", "subject": "News", "body": "Spring is here"}

    refused = await engage.client.post("/v1/emails", json=mail)
    assert refused.status_code == 409 and refused.json()["error"] == "no_consent", refused.text
    refused = await engage.client.post("/v1/emails", json={**mail, "customer_id": nobody["id"], "purpose": "service"})
    assert refused.status_code == 409 and refused.json()["error"] == "no_address", refused.text
    unknown = await engage.client.post("/v1/emails", json={**mail, "customer_id": "no-such-customer"})
    assert _field_error(unknown)[0] == "body.customer_id"
    # Known from identify's created event, but its contact details not yet in (another consumer):
    # not yet known here, rather than a 409 no_address (CI's PostgreSQL run met that race).
    async with transaction(engage.runtime.db.writer) as session:
        await known_customers.add(session, [{"id": "contact-on-its-way", "created_at": datetime.now(UTC)}])
    pending = await engage.client.post("/v1/emails", json={**mail, "customer_id": "contact-on-its-way"})
    assert _field_error(pending) == (
        "body.customer_id",
        "customer contact-on-its-way's contact details have not reached engage yet",
    ), pending.text
    field_name, message = _field_error(await engage.client.post("/v1/emails", json={**mail, "body": "{{ secret }}"}))
    assert field_name == "body.body" and "secret" in message
    assert _field_error(await engage.client.post("/v1/emails", json={**mail, "template_id": "nope"}))[0] == "body"
    no_template = await engage.client.post(
        "/v1/emails", json={"customer_id": ada["id"], "purpose": "marketing", "template_id": "nope"}
    )
    assert _field_error(no_template)[0] == "body.template_id"
    missing = await engage.client.post(
        "/v1/emails",
        json={"customer_id": ada["id"], "purpose": "service", "subject": "Code", "body": "{{ offer_code }}"},
    )
    assert _field_error(missing)[0] == "body.fields"
    extra = await engage.client.post("/v1/emails", json={**mail, "fields": {"password": "x"}})
    assert _field_error(extra)[0].startswith("body.fields")
    async with engage.runtime.db.reader() as session:
        from sqlalchemy import func, select

        from services.engage.conversations.models import Message

        assert await session.scalar(select(func.count()).select_from(Message)) == 0

    await _consent(engage, ada["id"])
    response = await engage.client.post("/v1/emails", json=mail)
    assert response.status_code == 202, response.text
    await _email_when(engage, response.json()["id"], "sent")
    (message,) = inbox.messages()
    body = _text(message)
    assert body.startswith("Spring is here\n\n--\nTo stop these emails: http")
    assert message["List-Unsubscribe"]


async def test_a_refused_send_is_retried_then_failed_with_the_servers_reply(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, mail_max_attempts=3, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    grace = await _customer(identify, engage, email="grace@example.com", name="Grace")

    # 451 (try later), then 550 (no such user): failed at the second attempt, the address refused.
    inbox.rcpt_replies[:] = ["451 4.3.0 Try again later", "550 5.1.1 No such user"]
    mail = {"purpose": "service", "subject": "Hello", "body": "Hello"}
    first = (await engage.client.post("/v1/emails", json={**mail, "customer_id": ada["id"]})).json()
    failed = await _email_when(engage, first["id"], "failed")
    assert failed["attempts"] == 2 and failed["last_error"] == "550 5.1.1 No such user"
    assert inbox.received == []
    again = await engage.client.post("/v1/emails", json={**mail, "customer_id": ada["id"]})
    assert again.status_code == 409 and again.json()["error"] == "undeliverable", again.text

    # Only 4xx: failed after mail_max_attempts with the last reply.
    inbox.rcpt_replies[:] = ["452 4.2.2 Mailbox full"] * 3
    second = (await engage.client.post("/v1/emails", json={**mail, "customer_id": grace["id"]})).json()
    failed = await _email_when(engage, second["id"], "failed")
    assert failed["attempts"] == 3 and failed["last_error"] == "452 4.2.2 Mailbox full"

    events = await _read_stream(suite.nats.url, "crm.engage.message.failed", 2, settle=True)
    assert [(e["data"]["id"], e["data"]["status"], e["data"]["reason"]) for e in events] == [
        (first["id"], "failed", "550 5.1.1 No such user"),
        (second["id"], "failed", "452 4.2.2 Mailbox full"),
    ]


async def test_a_server_that_cannot_be_reached_costs_attempts_then_fails_the_message(suite):
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=f"smtp://127.0.0.1:{free_port()}", mail_max_attempts=2, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    mail = {"customer_id": ada["id"], "purpose": "service", "subject": "Hello", "body": "Hello"}
    queued = [(await engage.client.post("/v1/emails", json=mail)).json() for _ in range(3)]
    for message in queued:
        failed = await _email_when(engage, message["id"], "failed")
        assert failed["attempts"] == 2 and failed["last_error"], failed


async def test_without_an_smtp_server_mail_is_written_to_var_mail(suite):
    identify = await suite.start("identify")
    # An idle sender that would look again only in a minute: the queued message wakes it.
    engage = await suite.start("engage", mail_poll_s=60)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    response = await engage.client.post(
        "/v1/emails",
        json={"customer_id": ada["id"], "purpose": "service", "subject": "Your receipt", "body": "Thanks, {{ name }}"},
    )
    assert response.status_code == 202, response.text
    queued = response.json()
    await _email_when(engage, queued["id"], "sent")
    written = engage.settings.var_dir / "mail" / f"{queued['id']}.eml"
    message = email.message_from_bytes(written.read_bytes(), policy=policy.default)
    assert (message["To"], message["Subject"], message["Message-ID"]) == (
        "ada@example.com",
        "Your receipt",
        queued["rfc_message_id"],
    )
    assert _text(message).strip() == "Thanks, Ada"
    assert list((engage.settings.var_dir / "mail").glob("*.partial")) == []


async def test_marketing_consent_withdrawn_after_queueing_stops_the_message(suite):
    identify = await suite.start("identify")
    engage = await suite.start("engage", **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    now = datetime.now(UTC)
    consent = {
        "customer_id": ada["id"],
        "purpose": "marketing",
        "channel": "email",
        "legal_basis": "consent",
        "source": "api",
        "notice_version": None,
        "now": now,
    }
    async with transaction(engage.runtime.db.writer) as session:
        await rules.record(session, granted=True, changed_at=now - timedelta(seconds=2), **consent)
        queued = await queue_email(
            session, customer_id=ada["id"], subject="Sale", body="Sale", purpose="marketing", now=now
        )
        await rules.record(session, granted=False, changed_at=now - timedelta(seconds=1), **consent)
    refused = await _email_when(engage, queued.id, "refused")
    assert refused["last_error"] == "no_consent" and refused["sent_at"] is None
    assert not (engage.settings.var_dir / "mail" / f"{queued.id}.eml").exists()


# --- templates ----------------------------------------------------------------------------


async def test_templates_are_checked_when_saved(suite):
    engage = await suite.start("engage")
    cases = [
        ({**MARKETING, "body": "Hi {{ nickname }} {{ unsubscribe_link }}"}, "body.body", "nickname"),
        ({**MARKETING, "subject": "Hi {{ name "}, "body.subject", "not a valid template"),
        ({**MARKETING, "body": "Hi {% for %}"}, "body.body", "not a valid template"),
        ({**MARKETING, "body": "Hi {{ name }}"}, "body.body", "unsubscribe_link"),
        ({**MARKETING, "subject": None}, "body.subject", "needs a subject"),
    ]
    for body, field_name, words in cases:
        found, message = _field_error(await engage.client.post("/v1/templates", json=body))
        assert (found, words in message) == (field_name, True), (body, message)
    assert (await engage.client.get("/v1/templates")).json()["items"] == []

    created = (await engage.client.post("/v1/templates", json=MARKETING)).json()
    service = {"name": "Receipt", "purpose": "service", "subject": "Receipt", "body": "Thanks {{ name }}"}
    second = await engage.client.post("/v1/templates", json=service)
    assert second.status_code == 201, second.text
    duplicate = await engage.client.post("/v1/templates", json={**service, "body": "Other"})
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "duplicate_name"

    page = (await engage.client.get("/v1/templates", params={"limit": 1})).json()
    assert [t["id"] for t in page["items"]] == [created["id"]] and page["next_cursor"]
    rest = (await engage.client.get("/v1/templates", params={"cursor": page["next_cursor"]})).json()
    assert [t["id"] for t in rest["items"]] == [second.json()["id"]]

    bad = await engage.client.put(f"/v1/templates/{created['id']}", json={**MARKETING, "body": "{{ password }}"})
    assert _field_error(bad)[0] == "body.body"
    replaced = await engage.client.put(
        f"/v1/templates/{created['id']}", json={**MARKETING, "body": "Bye {{ unsubscribe_link }}"}
    )
    assert replaced.status_code == 200 and replaced.json()["fields"] == [
        "first_name",
        "offer_code",
        "unsubscribe_link",
    ]
    assert (await engage.client.get(f"/v1/templates/{created['id']}")).json()["body"] == "Bye {{ unsubscribe_link }}"
    fields = (await engage.client.get("/v1/templates/fields")).json()["items"]
    assert {f["name"]: f["filled_by"] for f in fields}["unsubscribe_link"] == "engage"
    assert (await engage.client.delete(f"/v1/templates/{created['id']}")).status_code == 204
    assert (await engage.client.get(f"/v1/templates/{created['id']}")).status_code == 404
    assert (await engage.client.delete(f"/v1/templates/{created['id']}")).status_code == 404


# --- value's requests ----------------------------------------------------------------------


def _request(customer_id: str, request_id: str, **overrides) -> dict:
    return {
        "request_id": request_id,
        "customer_id": customer_id,
        "channel": "email",
        "purpose": "marketing",
        "fields": {"offer_code": "WELCOME5", "offer_title": "5 off", "not_a_field_of_ours": "ignored"},
        "source_kind": "campaign",
        "source_id": "campaign-1",
        "requested_at": datetime.now(UTC).isoformat(),
        **overrides,
    }


async def test_value_requests_are_queued_or_refused_and_reported(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    bob = await _customer(identify, engage, email="bob@example.com", name="Bob")
    await _consent(engage, ada["id"])
    template = (await engage.client.post("/v1/templates", json=MARKETING)).json()

    requests = [
        _request(ada["id"], "req-sent", template_id=template["id"]),
        _request(bob["id"], "req-no-consent", template_id=template["id"]),
        _request(ada["id"], "req-sms", channel="sms", subject="Hi", body="Hi"),
        _request(ada["id"], "req-no-template", template_id="missing"),
        _request(ada["id"], "req-service", purpose="service", subject="Idea {{ idea_title }}", body="Shipped!"),
    ]
    for number, data in enumerate(requests):
        event = catalog_event("value", "crm.value.message.requested", data, data["customer_id"])
        await publish(suite.nats.url, event, f"request-{number}")
    # The same request again under another event id (a retried publish): nothing is queued twice.
    again = catalog_event("value", "crm.value.message.requested", requests[0], ada["id"])
    await publish(suite.nats.url, again, "request-again")

    reports = await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 5)
    by_request = {r["data"]["request_id"]: r["data"] for r in reports}
    assert {key: (r["outcome"], r["reason"]) for key, r in by_request.items()} == {
        "req-sent": ("sent", None),
        "req-no-consent": ("refused", "no_consent"),
        "req-sms": ("refused", "no_transport"),
        "req-no-template": ("refused", "unknown_template"),
        "req-service": ("refused", "missing_field"),  # the request named no idea_title
    }
    sent = by_request["req-sent"]
    assert (sent["source_kind"], sent["source_id"], sent["customer_id"]) == ("campaign", "campaign-1", ada["id"])
    email_row = (await engage.client.get(f"/v1/emails/{sent['message_id']}")).json()
    assert (email_row["status"], email_row["request_id"], email_row["subject"]) == (
        "sent",
        "req-sent",
        "Ada, your code WELCOME5",
    )
    await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 5, settle=True)
    assert len(inbox.received) == 1


async def test_a_request_that_overtakes_the_customers_contact_waits_for_it(suite, smtp):
    """value's request may reach engage before identify's created event has reached engage's
    contacts (another consumer): the request is retried until the contact is in, then sent;
    never refused as `no_address` for a customer who has one."""

    inbox, url = smtp
    await suite.start("engage", smtp_url=url, **FAST)
    data = _request("late-contact", "req-late", purpose="service", subject="Hello", body="Your order shipped")
    await publish(suite.nats.url, catalog_event("value", "crm.value.message.requested", data, "late-contact"), "late")

    async def retried() -> bool:
        nc = await nats.connect(suite.nats.url)
        try:
            info = await nc.jetstream().consumer_info("CRM", "engage-events")
            return info.num_redelivered >= 1
        finally:
            await nc.close()

    await wait_until(retried, what="the request failed once and is being retried")
    created = {"id": "late-contact", "email": "late@example.com", "name": "Late", "created_at": datetime.now(UTC)}
    created_event = catalog_event("identify", "crm.identify.customer.created", created, "late-contact")
    await publish(suite.nats.url, created_event, "created")

    (report,) = await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 1, settle=True)
    assert (report["data"]["request_id"], report["data"]["outcome"]) == ("req-late", "sent"), report
    assert [m["To"] for m in inbox.messages()] == ["late@example.com"]


async def test_ticket_replies_from_lifecycle_are_sent_in_the_tickets_conversation(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    bob = await _customer(identify, engage, name="Bob", external_id="bob-1")  # no address
    conversation = (
        await engage.client.post("/v1/conversations", json={"customer_id": ada["id"], "channel": "email"})
    ).json()

    def reply(customer_id, request_id, conversation_id=None):
        return catalog_event(
            "lifecycle",
            "crm.lifecycle.reply.requested",
            {
                "request_id": request_id,
                "ticket_id": "ticket-1",
                "customer_id": customer_id,
                "conversation_id": conversation_id,
                "subject": "Parcel arrived broken",
                "body": "A new one is on its way.",
                "requested_at": datetime.now(UTC).isoformat(),
            },
            customer_id,
        )

    for event in (reply(ada["id"], "reply-1", conversation["id"]), reply(bob["id"], "reply-2")):
        await publish(suite.nats.url, event, event.id)
    reports = await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 2, settle=True)
    by_request = {r["data"]["request_id"]: r["data"] for r in reports}
    assert (by_request["reply-1"]["outcome"], by_request["reply-1"]["source_kind"]) == ("sent", "ticket")
    assert (by_request["reply-2"]["outcome"], by_request["reply-2"]["reason"]) == ("refused", "no_address")
    messages = (await engage.client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    assert [(m["id"], m["subject"], m["purpose"]) for m in messages] == [
        (by_request["reply-1"]["message_id"], "Re: Parcel arrived broken", "service")
    ]
    assert inbox.messages()[0]["Subject"] == "Re: Parcel arrived broken"


# --- several senders ------------------------------------------------------------------------


async def test_a_bulk_request_is_each_recipients_own_request(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, **FAST)
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    bob = await _customer(identify, engage, email="bob@example.com", name="Bob")
    await _consent(engage, ada["id"])
    template = (await engage.client.post("/v1/templates", json=MARKETING)).json()
    shared = _request(ada["id"], "x", template_id=template["id"])
    for key in ("request_id", "customer_id", "fields"):
        del shared[key]
    bulk = {
        **shared,
        "recipients": [
            {
                "request_id": "bulk-ada",
                "customer_id": ada["id"],
                "fields": {"offer_code": "ADA1", "offer_title": "5 off"},
            },
            {
                "request_id": "bulk-bob",
                "customer_id": bob["id"],
                "fields": {"offer_code": "BOB1", "offer_title": "5 off"},
            },
        ],
    }
    event = catalog_event("value", "crm.value.messages.requested", bulk, None)
    await publish(suite.nats.url, event, "bulk-1")
    # The same event stored twice (published again past JetStream's duplicate window): engage's
    # inbox applies it once, so nothing is queued or reported twice.
    await publish(suite.nats.url, event, "bulk-2")

    reports = await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 2, settle=True)
    assert {r["data"]["request_id"]: (r["data"]["outcome"], r["data"]["reason"]) for r in reports} == {
        "bulk-ada": ("sent", None),
        "bulk-bob": ("refused", "no_consent"),
    }
    (message,) = inbox.messages()
    assert message["Subject"] == "Ada, your code ADA1"


async def test_senders_sharing_a_queue_never_send_a_message_twice(suite, smtp):
    inbox, url = smtp
    identify = await suite.start("identify")
    engage = await suite.start("engage", smtp_url=url, mail_batch=25, mail_connections=2, mail_poll_s=0.05)
    customers = [
        await _customer(identify, engage, email=f"c{number}@example.com", name=f"C {number}") for number in range(6)
    ]
    now = datetime.now(UTC) - timedelta(seconds=1)
    count = 240
    async with transaction(engage.runtime.db.writer) as session:
        for number in range(count):
            await queue_email(
                session,
                customer_id=customers[number % 6]["id"],
                subject=f"Message {number}",
                body="Hello",
                purpose="service",
                now=now,
            )

    # Two more engage "replicas": their own database connections, sharing the queue.
    replicas = []
    for _ in range(2):
        db = Database.connect(engage.runtime.db.url, service="engage")
        db.info.update({"messaging": engage.runtime.db.info["messaging"]})
        replicas.append(Sender(_Replica(engage.settings, db)))

    async def drain(sender: Sender) -> None:
        while await sender.send_due():
            continue

    try:
        await asyncio.gather(*(drain(sender) for sender in replicas))

        async def all_sent() -> bool:
            return len(inbox.received) >= count

        await wait_until(all_sent, what="every message sent")
    finally:
        for sender in replicas:
            await sender.transport.close()
            await sender.runtime.db.dispose()
    subjects = [message["Subject"] for message in inbox.messages()]
    assert sorted(subjects) == sorted(f"Message {number}" for number in range(count))
    events = await _read_stream(suite.nats.url, "crm.engage.message.sent", count, settle=True)
    assert len({e["data"]["id"] for e in events}) == count


@dataclass
class _Replica:
    settings: object
    db: Database


# --- the SMTP URL ---------------------------------------------------------------------------


def test_the_smtp_url_says_where_and_how_to_connect():
    from pydantic import ValidationError

    from services.engage.outbound.transport import SmtpServer
    from shared.settings import EngageSettings

    plain = SmtpServer.parse("smtp://mail.example.com")
    assert (plain.hostname, plain.port, plain.use_tls, plain.start_tls, plain.username) == (
        "mail.example.com",
        25,
        False,
        False,
        None,
    )
    tls = SmtpServer.parse("smtps://crm%40shop:p%40ss%2Fword@mail.example.com")
    assert (tls.port, tls.use_tls, tls.username, tls.password, tls.verify) == (
        465,
        True,
        "crm@shop",
        "p@ss/word",
        True,
    )
    starttls = SmtpServer.parse("smtp://mail.example.com:587?starttls=true&verify=false")
    assert (starttls.port, starttls.start_tls, starttls.verify) == (587, True, False)
    with pytest.raises(ValueError, match="unknown options"):
        SmtpServer.parse("smtp://mail.example.com?tls=yes")
    with pytest.raises(ValidationError, match="smtp:// or smtps://"):
        EngageSettings(smtp_url="http://mail.example.com")
    settings = EngageSettings(smtp_url="smtp://crm:secret@mail.example.com")
    assert settings.secrets()["VALUECHAIN_SMTP_URL (its password)"] == "secret"
    assert EngageSettings(smtp_url="").smtp_url is None


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""

    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


async def test_starttls_and_implicit_tls_with_a_login_as_the_url_says(tmp_path):
    import ssl

    from aiosmtpd.smtp import AuthResult

    from services.engage.outbound.transport import Mail, SmtpServer, SmtpTransport

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"crm", b"s3cret"))

    mail = Mail(
        message_id="m1", sender="crm@example.com", recipient="ada@example.com", content=b"Subject: x\r\n\r\nHi\r\n"
    )
    login = {"authenticator": authenticator, "auth_require_tls": True}
    starttls_inbox, tls_inbox = Inbox(), Inbox()
    starttls = Controller(
        starttls_inbox, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True, **login
    )
    # (aiosmtpd does not count its own implicit TLS as TLS for auth_require_tls: the socket is TLS anyway.)
    implicit = Controller(
        tls_inbox,
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=context,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    starttls.start()
    implicit.start()
    try:
        for url, inbox in (
            (f"smtp://crm:s3cret@127.0.0.1:{starttls.port}?starttls=true&verify=false", starttls_inbox),
            (f"smtps://crm:s3cret@127.0.0.1:{implicit.port}?verify=false", tls_inbox),
        ):
            transport = SmtpTransport(SmtpServer.parse(url), connections=1, timeout_s=10)
            try:
                assert await transport.send([mail]) == [SENT_OUTCOME], url
            finally:
                await transport.close()
            assert [(sender, rcpt) for sender, rcpt, _ in inbox.received] == [("crm@example.com", ["ada@example.com"])]
        # Without STARTTLS the server offers no login: not sent, and tried again later.
        transport = SmtpTransport(
            SmtpServer.parse(f"smtp://crm:s3cret@127.0.0.1:{starttls.port}"), connections=1, timeout_s=10
        )
        try:
            (outcome,) = await transport.send([mail])
        finally:
            await transport.close()
        assert not outcome.sent and not outcome.permanent and "TLS" in (outcome.error or ""), outcome
    finally:
        starttls.stop()
        implicit.stop()
