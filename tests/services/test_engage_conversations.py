"""engage's conversations, recorded messages, inbound email and bounces, against a real
nats-server and real databases (identify creates the customers; network's employees arrive as
events on the bus, as network publishes them)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import func, select

from services.engage.conversations.models import Attachment, Message
from services.engage.outbound.queue import queue_email
from shared.db.uow import transaction
from tests.services.test_engage import catalog_event, create_customer, publish, start
from tests.services.test_lifecycle import _handled, _read_stream
from tests.support import wait_until


async def _stakeholder(suite, engage, stakeholder_id: str, kind: str) -> None:
    event = catalog_event(
        "network",
        "crm.network.stakeholder.created",
        {"id": stakeholder_id, "kind": kind, "name": "Eve", "created_at": "2026-01-01T00:00:00Z"},
        stakeholder_id,
    )
    await publish(suite.nats.url, event, event.id)
    await wait_until(lambda: _handled(engage, event.id), what=f"{kind} {stakeholder_id} known")


async def _contact(engage, customer_id: str):
    async def known():
        async with engage.runtime.db.reader() as session:
            from services.engage.contacts.service import contact_of

            return await contact_of(session, customer_id)

    return await wait_until(known, what="engage has the customer's contact")


async def _customer(suite, identify, engage, **body) -> dict:
    customer = await create_customer(identify, **body)
    await _contact(engage, customer["id"])
    return customer


def _mail(
    *,
    sender: str = "ada@example.com",
    subject: str = "Where is my order?",
    body: str = "Hello, my order has not arrived.",
    message_id: str | None = "<in-1@example.com>",
    extra: str = "",
) -> bytes:
    lines = [
        f"From: Ada <{sender}>",
        "To: shop@valuechain.localhost",
        f"Subject: {subject}",
        "Date: Tue, 01 Dec 2026 10:00:00 +0000",
    ]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n" + body + "\r\n").encode()


def _with_attachment(content: bytes, *, message_id: str) -> bytes:
    import base64

    encoded = base64.b64encode(content).decode()
    return (
        "From: Ada <ada@example.com>\r\n"
        "To: shop@valuechain.localhost\r\n"
        "Subject: The receipt\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the receipt attached.\r\n"
        "--XX\r\nContent-Type: text/html\r\n"
        'Content-Disposition: attachment; filename="receipt <b>.html"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--XX--\r\n"
    ).encode()


def _dsn(original_id: str, *, status: str = "5.1.1", action: str = "failed", recipient="ada@example.com") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\n"
        "To: shop@valuechain.localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} no such user\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: shop@valuechain.localhost\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\nSubject: Hi\r\n\r\n"
        "--B--\r\n"
    ).encode()


async def _post_mail(client, raw: bytes, content_type: str = "message/rfc822"):
    return await client.post("/v1/channels/email/inbound", content=raw, headers={"content-type": content_type})


async def _count(engage, model) -> int:
    async with engage.runtime.db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


# --- conversations and recorded messages -----------------------------------------------------


async def test_recorded_messages_thread_into_conversations_with_status_assignee_and_times(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    client = engage.client
    ada = await _customer(suite, identify, engage, email="ada@example.com", name="Ada")
    await _stakeholder(suite, engage, "emp-1", "employee")
    await _stakeholder(suite, engage, "partner-1", "partner")

    inbound = await client.post(
        "/v1/messages",
        json={
            "customer_id": ada["id"],
            "channel": "sms",
            "direction": "inbound",
            "body": "Is the shop open on Sunday?",
            "from_address": "+14155550100",
            "occurred_at": "2026-03-01T10:00:00Z",
        },
    )
    assert inbound.status_code == 201, inbound.text
    first = inbound.json()
    assert (first["status"], first["direction"], first["channel"]) == ("recorded", "inbound", "sms")
    conversation_id = first["conversation_id"]
    answer = await client.post(
        "/v1/messages",
        json={
            "customer_id": ada["id"],
            "channel": "sms",
            "direction": "outbound",
            "body": "Yes, 10 to 4.",
            "author_id": "emp-1",
            "occurred_at": "2026-03-01T10:05:00Z",
        },
    )
    assert answer.status_code == 201 and answer.json()["conversation_id"] == conversation_id
    # Another channel is another conversation.
    chat = await client.post(
        "/v1/messages", json={"customer_id": ada["id"], "channel": "chat", "direction": "inbound", "body": "Hi"}
    )
    assert chat.json()["conversation_id"] != conversation_id

    conversation = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    assert conversation["status"] == "open" and conversation["first_response_seconds"] == 300.0
    assert conversation["resolution_seconds"] is None

    # The assignee must be an employee stakeholder.
    for who in ("partner-1", "nobody"):
        refused = await client.patch(f"/v1/conversations/{conversation_id}", json={"assignee_id": who})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.assignee_id", refused.text
    assigned = await client.patch(f"/v1/conversations/{conversation_id}", json={"assignee_id": "emp-1"})
    assert assigned.json()["assignee_id"] == "emp-1"
    assert (await client.patch(f"/v1/conversations/{conversation_id}", json={"status": "pending"})).json()[
        "status"
    ] == "pending"
    closed = (await client.patch(f"/v1/conversations/{conversation_id}", json={"status": "closed"})).json()
    assert closed["status"] == "closed" and closed["closed_at"] and closed["resolution_seconds"] > 0
    impossible = await client.patch(f"/v1/conversations/{conversation_id}", json={"status": "pending"})
    assert impossible.status_code == 409, impossible.text
    assert impossible.json()["error"] == "invalid_transition" and "may become open" in impossible.json()["detail"]

    # The filters.
    listed = (await client.get("/v1/conversations", params={"assignee_id": "emp-1", "status": "closed"})).json()
    assert [c["id"] for c in listed["items"]] == [conversation_id]
    assert (await client.get("/v1/conversations", params={"channel": "chat"})).json()["items"][0]["channel"] == "chat"
    page = (await client.get(f"/v1/customers/{ada['id']}/conversations", params={"limit": 1})).json()
    rest = (await client.get(f"/v1/customers/{ada['id']}/conversations", params={"cursor": page["next_cursor"]})).json()
    assert len(page["items"]) == len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert (await client.get("/v1/customers/nobody/conversations")).status_code == 404

    # A customer's message reopens the closed conversation.
    again = await client.post(
        "/v1/messages",
        json={"customer_id": ada["id"], "channel": "sms", "direction": "inbound", "body": "And Saturday?"},
    )
    assert again.json()["conversation_id"] != conversation_id  # closed: a new thread on the channel
    reopened = await client.patch(f"/v1/conversations/{conversation_id}", json={"status": "open"})
    assert reopened.json()["closed_at"] is None

    thread = (await client.get(f"/v1/conversations/{conversation_id}/messages")).json()["items"]
    assert [m["body"] for m in thread] == ["Is the shop open on Sunday?", "Yes, 10 to 4."]
    assert (await client.get(f"/v1/messages/{first['id']}")).json()["body"] == "Is the shop open on Sunday?"
    assert (await client.get("/v1/messages/nope")).status_code == 404

    # Email is not recorded here; an unknown customer or author is named.
    email = await client.post(
        "/v1/messages", json={"customer_id": ada["id"], "channel": "email", "direction": "inbound", "body": "x"}
    )
    assert email.status_code == 422 and "POST /v1/emails" in email.text
    for body, field in (
        ({"customer_id": "nobody"}, "body.customer_id"),
        ({"author_id": "partner-1", "direction": "outbound"}, "body.author_id"),
    ):
        refused = await client.post(
            "/v1/messages",
            json={"customer_id": ada["id"], "channel": "phone", "direction": "inbound", "body": "x", **body},
        )
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == field, refused.text
    assert await _count(engage, Message) == 4  # nothing of the refused ones

    received = await _read_stream(suite.nats.url, "crm.engage.message.received", 3, settle=True)
    assert {e["data"]["channel"] for e in received} == {"sms", "chat"}
    [sent] = await _read_stream(suite.nats.url, "crm.engage.message.sent", 1, settle=True)
    assert sent["data"]["id"] == answer.json()["id"] and sent["subject"] == ada["id"]
    [closed_event] = await _read_stream(suite.nats.url, "crm.engage.conversation.closed", 1, settle=True)
    assert closed_event["data"]["first_response_seconds"] == 300.0
    assert closed_event["data"]["assignee_id"] == "emp-1"


# --- inbound email ---------------------------------------------------------------------------


async def test_inbound_email_is_threaded_kept_when_unmatched_linked_and_never_stored_twice(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    client = engage.client
    ada = await _customer(suite, identify, engage, email="Ada@Example.com", name="Ada")

    # By the sender's address (any case), into a new email conversation.
    first = await _post_mail(client, _mail())
    assert first.status_code == 201, first.text
    assert first.json()["outcome"] == "received"
    message = first.json()["message"]
    assert message["customer_id"] == ada["id"] and message["status"] == "received"
    assert message["occurred_at"].startswith("2026-12-01T10:00:00")
    conversation_id = message["conversation_id"]
    # The same Message-ID again: not stored twice.
    replay = await _post_mail(client, _mail(), content_type="application/octet-stream")
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    assert replay.json()["message"]["id"] == message["id"]

    # Staff reply by email: queued for the sender, threaded for the customer's mail program.
    reply = await client.post(f"/v1/conversations/{conversation_id}/messages", json={"body": "It ships today."})
    assert reply.status_code == 201, reply.text
    queued = reply.json()
    assert (queued["status"], queued["subject"], queued["in_reply_to"]) == (
        "queued",
        "Re: Where is my order?",
        "<in-1@example.com>",
    )
    closed = await client.patch(f"/v1/conversations/{conversation_id}", json={"status": "closed"})
    assert closed.json()["status"] == "closed"
    # The customer answers our reply from another address: threaded by In-Reply-To, which reopens it.
    answered = await _post_mail(
        client,
        _mail(
            sender="ada.work@example.org",
            subject="Re: Where is my order?",
            message_id="<in-2@example.org>",
            extra=f"In-Reply-To: {queued['rfc_message_id']}\r\nReferences: <in-1@example.com> "
            f"{queued['rfc_message_id']}\r\n",
        ),
    )
    assert answered.json()["message"]["conversation_id"] == conversation_id
    conversation = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    assert conversation["first_response_at"] is not None
    assert (conversation["status"], conversation["closed_at"]) == ("open", None)

    # An unknown sender: kept, listed, linked later.
    stranger = await _post_mail(client, _mail(sender="who@example.net", message_id="<in-3@example.net>"))
    assert stranger.status_code == 201 and stranger.json()["outcome"] == "unmatched"
    kept = stranger.json()["message"]
    assert (kept["customer_id"], kept["conversation_id"], kept["status"]) == (None, None, "unmatched")
    unmatched = (await client.get("/v1/channels/email/unmatched")).json()["items"]
    assert [m["id"] for m in unmatched] == [kept["id"]]
    unknown = await client.post(f"/v1/messages/{kept['id']}/link", json={"customer_id": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"
    linked = await client.post(f"/v1/messages/{kept['id']}/link", json={"customer_id": ada["id"]})
    assert linked.status_code == 200, linked.text
    assert linked.json()["conversation_id"] == conversation_id and linked.json()["status"] == "received"
    twice = await client.post(f"/v1/messages/{kept['id']}/link", json={"customer_id": ada["id"]})
    assert (twice.status_code, twice.json()["error"]) == (409, "not_unmatched")
    assert (await client.get("/v1/channels/email/unmatched")).json()["items"] == []

    # Malformed: 422 saying why, nothing stored.
    before = await _count(engage, Message)
    for raw, why in (
        (b"", "empty"),
        (b"just some text without any header\r\n", "no header section"),
        (_mail(sender="not an address", message_id="<x1@x>"), "no From address"),
        (b"From: ada@example.com\r\nSubject: nothing\r\n\r\n   \r\n", "no body"),
    ):
        refused = await _post_mail(client, raw)
        assert refused.status_code == 422 and why in refused.text, (raw, refused.text)
    assert (await _post_mail(client, _mail(), content_type="application/json")).status_code == 415
    assert await _count(engage, Message) == before

    received = await _read_stream(suite.nats.url, "crm.engage.message.received", 3, settle=True)
    assert [e["data"]["conversation_id"] for e in received] == [conversation_id] * 3


async def test_attachments_are_stored_with_their_hash_and_only_handed_back_as_downloads(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    await _customer(suite, identify, engage, email="ada@example.com")
    content = b"<script>alert(1)</script>" * 100
    stored = await _post_mail(engage.client, _with_attachment(content, message_id="<att-1@example.com>"))
    assert stored.status_code == 201, stored.text
    message = stored.json()["message"]
    assert message["body"] == "See the receipt attached."
    [attachment] = message["attachments"]
    assert attachment == {
        "id": attachment["id"],
        "filename": "receipt <b>.html",
        "content_type": "text/html",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    download = await engage.client.get(f"/v1/messages/{message['id']}/attachments/{attachment['id']}")
    assert download.status_code == 200 and download.content == content
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert (await engage.client.get(f"/v1/messages/{message['id']}/attachments/nope")).status_code == 404


# --- bounces ---------------------------------------------------------------------------------


async def test_a_bounce_marks_its_message_and_a_hard_one_the_address(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    ada = await _customer(suite, identify, engage, email="ada@example.com")
    bob = await _customer(suite, identify, engage, email="bob@example.com")
    now = datetime.now(UTC)
    async with transaction(engage.runtime.db.writer) as session:
        to_ada = await queue_email(
            session,
            customer_id=ada["id"],
            subject="Your offer",
            body="10% off",
            purpose="service",
            now=now,
            request_id="req-1",
            source_kind="campaign",
            source_id="camp-1",
        )
        to_bob = await queue_email(
            session, customer_id=bob["id"], subject="Hi", body="Hello", purpose="service", now=now
        )
        ada_id, ada_rfc, bob_rfc = to_ada.id, to_ada.rfc_message_id, to_bob.rfc_message_id

    # engage's sender sends them (to var/mail here) before any report of them can come back.
    async def both_sent():
        sent = Message.__table__.c.status == "sent"
        async with engage.runtime.db.reader() as session:
            return (await session.execute(select(func.count()).select_from(Message).where(sent))).scalar_one() == 2

    await wait_until(both_sent, what="the two messages sent")

    # A soft bounce (4.x.x) marks the message, not the address.
    soft = await _post_mail(engage.client, _dsn(bob_rfc, status="4.2.2", recipient="bob@example.com"))
    assert soft.status_code == 200, soft.text
    assert soft.json()["bounce"]["hard"] is False and soft.json()["message"]["status"] == "bounced"
    # A delay is no bounce.
    delayed = await _post_mail(engage.client, _dsn(ada_rfc, status="4.4.7", action="delayed"))
    assert delayed.json()["message"] is None
    hard = await _post_mail(engage.client, _dsn(ada_rfc))
    assert hard.status_code == 200, hard.text
    assert hard.json()["outcome"] == "bounce" and hard.json()["bounce"]["hard"] is True
    bounced = hard.json()["message"]
    assert bounced["id"] == ada_id and bounced["status"] == "bounced" and "no such user" in bounced["last_error"]
    # A DSN is no customer's message: nothing threaded, nothing unmatched.
    assert await _count(engage, Message) == 2

    ada_contact = await _contact(engage, ada["id"])
    bob_contact = await _contact(engage, bob["id"])
    assert ada_contact.email_undeliverable_at is not None and bob_contact.email_undeliverable_at is None

    failed = await _read_stream(suite.nats.url, "crm.engage.message.failed", 2, settle=True)
    assert {(e["data"]["id"], e["data"]["status"]) for e in failed} == {(ada_id, "bounced"), (to_bob.id, "bounced")}
    sent, report = await _read_stream(suite.nats.url, "crm.engage.delivery.reported", 2, settle=True)
    assert (sent["data"]["outcome"], sent["data"]["message_id"]) == ("sent", ada_id)
    assert report["data"] | {"reported_at": None} == {
        "request_id": "req-1",
        "customer_id": ada["id"],
        "channel": "email",
        "outcome": "bounced",
        "reason": "5.1.1 smtp; 550 5.1.1 no such user",
        "message_id": ada_id,
        "source_kind": "campaign",
        "source_id": "camp-1",
        "reported_at": None,
    }


# --- erasure and export ------------------------------------------------------------------------


async def test_erasure_removes_messages_attachments_and_conversation_subjects_and_export_lists_them(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    ada = await _customer(suite, identify, engage, email="ada@example.com")
    stored = await _post_mail(engage.client, _with_attachment(b"receipt", message_id="<er-1@example.com>"))
    message = stored.json()["message"]
    await engage.client.post(
        "/v1/messages",
        json={"customer_id": ada["id"], "channel": "sms", "direction": "inbound", "body": "Call me", "subject": "Hi"},
    )

    exported = (await engage.client.get(f"/internal/customers/{ada['id']}/personal-data")).json()
    tables = {t["table"]: t for t in exported["tables"]} if "tables" in exported else {}
    assert {"messages", "conversations", "attachments"} <= set(tables), exported
    assert {row["body"] for row in tables["messages"]["rows"]} == {"See the receipt attached.", "Call me"}
    assert [row["filename"] for row in tables["attachments"]["rows"]] == ["receipt <b>.html"]

    erased = await identify.client.post(f"/v1/customers/{ada['id']}/erasure")
    assert erased.status_code == 202, erased.text

    async def blanked():
        body = (await engage.client.get(f"/v1/messages/{message['id']}")).json()
        return body["body"] is None and body

    body = await wait_until(blanked, what="engage erased the messages")
    assert body["from_address"] is None and body["subject"] is None and body["attachments"] == []
    assert await _count(engage, Attachment) == 0
    conversations = (await engage.client.get(f"/v1/customers/{ada['id']}/conversations")).json()["items"]
    assert {c["subject"] for c in conversations} == {None}
