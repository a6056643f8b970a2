"""engage's contact read model, from identify's real events: created, updated, merged, erased."""

from __future__ import annotations

from datetime import UTC, datetime

from services.engage.contacts import service as contacts
from tests.support import wait_until


async def _contact(engage, customer_id):
    async with engage.runtime.db.reader() as session:
        contact = await contacts.contact_of(session, customer_id)
        return (
            None
            if contact is None
            else {c: getattr(contact, c) for c in ("name", "email", "email_key", "phone", "email_undeliverable_at")}
        )


async def test_contacts_follow_identify_and_a_new_address_lifts_a_hard_bounce(suite):
    identify = await suite.start("identify")
    engage = await suite.start("engage")
    ada = (
        await identify.client.post(
            "/v1/customers", json={"email": "Ada@Example.com", "name": "Ada", "phone": "+14155550100"}
        )
    ).json()
    contact = await wait_until(lambda: _contact(engage, ada["id"]), what="ada's contact")
    assert contact["email"] == "Ada@Example.com" and contact["email_key"] == "ada@example.com"
    assert contact["name"] == "Ada" and contact["phone"] == "+14155550100"

    async with engage.runtime.db.writer() as session:
        assert await contacts.customers_with_email(session, "ADA@example.COM ") == [ada["id"]]
        assert (
            await contacts.mark_undeliverable(session, "ada@example.com", "550 5.1.1 no such user", datetime.now(UTC))
            == 1
        )
        await session.commit()
    assert (await _contact(engage, ada["id"]))["email_undeliverable_at"] is not None

    patched = await identify.client.patch(f"/v1/customers/{ada['id']}", json={"email": "ada@new.example"})
    assert patched.status_code == 200, patched.text

    async def moved():
        contact = await _contact(engage, ada["id"])
        return contact if contact["email"] == "ada@new.example" else None

    contact = await wait_until(moved, what="the new address")
    assert contact["email_undeliverable_at"] is None and contact["name"] == "Ada"


async def test_a_merge_gives_the_survivor_what_it_lacked_and_an_erasure_blanks_the_contact(suite):
    identify = await suite.start("identify")
    engage = await suite.start("engage")
    keep = (await identify.client.post("/v1/customers", json={"email": "keep@example.com"})).json()
    twin = (
        await identify.client.post(
            "/v1/customers", json={"email": "twin@example.com", "phone": "+14155550101", "name": "Twin"}
        )
    ).json()
    for customer in (keep, twin):
        await wait_until(lambda c=customer: _contact(engage, c["id"]), what="contacts")
    merged = await identify.client.post(f"/v1/customers/{keep['id']}/merge", json={"merge": [twin["id"]]})
    assert merged.status_code == 200, merged.text

    async def folded():
        contact = await _contact(engage, keep["id"])
        gone = await _contact(engage, twin["id"])
        return contact if gone is None and contact["phone"] else None

    contact = await wait_until(folded, what="the twin folded into the survivor")
    assert (contact["email"], contact["phone"]) == ("keep@example.com", "+14155550101")

    erasure = await identify.client.post(f"/v1/customers/{keep['id']}/erasure")
    assert erasure.status_code == 202, erasure.text

    async def blank():
        contact = await _contact(engage, keep["id"])
        return contact if contact["email"] is None else None

    contact = await wait_until(blank, what="the contact erased")
    assert contact == {"name": None, "email": None, "email_key": None, "phone": None, "email_undeliverable_at": None}
