"""The marketing gate and the send queue (services/engage/consent/rules.py and
services/engage/outbound/queue.py) against a real engage database fed by identify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.engage.consent import rules
from services.engage.contacts import service as contacts
from services.engage.outbound.queue import queue_email
from shared.db.uow import transaction
from shared.http.errors import Conflict
from tests.services.test_value import _read_stream
from tests.support import wait_until


async def _known(engage, customer_id):
    async with engage.runtime.db.reader() as session:
        return await contacts.contact_of(session, customer_id) is not None


async def _refused(engage, code, **kwargs):
    async with engage.runtime.db.writer() as session:
        with pytest.raises(Conflict) as refused:
            await queue_email(session, **kwargs)
        await session.rollback()
    assert refused.value.error == code, refused.value.detail
    return refused.value


async def test_marketing_needs_consent_and_stops_at_the_cap_and_service_mail_needs_an_address(suite):
    identify = await suite.start("identify")
    engage = await suite.start("engage")
    ada = (await identify.client.post("/v1/customers", json={"email": "ada@example.com", "name": "Ada"})).json()
    nobody = (
        await identify.client.post("/v1/customers", json={"name": "No Address", "external_id": "no-address-1"})
    ).json()
    for customer in (ada, nobody):
        await wait_until(lambda c=customer: _known(engage, c["id"]), what="engage knows the customer")
    now = datetime.now(UTC)
    mail = {"customer_id": ada["id"], "subject": "Spring", "body": "Hello", "purpose": "marketing", "now": now}

    refused = await _refused(engage, "no_consent", **mail)
    assert "marketing on email" in refused.detail
    await _refused(engage, "no_address", **{**mail, "customer_id": nobody["id"], "purpose": "service"})

    async with transaction(engage.runtime.db.writer) as session:
        await rules.record(
            session,
            customer_id=ada["id"],
            purpose="marketing",
            channel="email",
            granted=True,
            legal_basis="consent",
            source="api",
            notice_version="2026-01",
            changed_at=now - timedelta(days=1),
            now=now,
        )
        # Back-dated: joins the history, does not move the state.
        await rules.record(
            session,
            customer_id=ada["id"],
            purpose="marketing",
            channel="email",
            granted=False,
            legal_basis="consent",
            source="import",
            notice_version=None,
            changed_at=now - timedelta(days=30),
            now=now,
        )
        queued = [await queue_email(session, **mail) for _ in range(3)]  # the default cap: 3 in 7 days
    assert {m.status for m in queued} == {"queued"}
    assert queued[0].to_address == "ada@example.com" and queued[0].rfc_message_id.endswith("@valuechain.localhost>")
    refused = await _refused(engage, "frequency_cap", **mail)
    assert "the cap is 3" in refused.detail
    # A service message is not marketing: no consent or cap applies.
    async with transaction(engage.runtime.db.writer) as session:
        await queue_email(session, **{**mail, "purpose": "service"})
        await contacts.mark_undeliverable(session, "ada@example.com", "550 no such user", now)
    await _refused(engage, "undeliverable", **{**mail, "purpose": "service"})

    events = await _read_stream(suite.nats.url, "crm.engage.consent.changed", 2, settle=True)
    assert [(e["data"]["granted"], e["data"]["source"]) for e in events] == [(True, "api"), (False, "import")]
