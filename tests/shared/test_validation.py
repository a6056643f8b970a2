"""Client text is refused with a 422 naming the field when it holds a NUL, another control
character or a bidirectional formatting character, in every service's schemas; emails
are checked by email-validator's syntax rules, without DNS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.engage.schemas import InteractionCreate
from services.identify.customers.schemas import CustomerCreate, CustomerPatch
from services.identify.transactions.schemas import TransactionCreate
from services.network.stakeholders.schemas import StakeholderCreate
from services.value.schemas import OfferCreate
from shared.http.validation import NOT_IN_A_LINE, NOT_IN_TEXT

REFUSED = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"]


def refused(model, body: dict) -> list[tuple]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


@pytest.mark.parametrize("char", REFUSED + ["\n", "\t", "\r"])
def test_single_line_fields_refuse_control_and_bidi_characters(char):
    for model, base, field in (
        (CustomerCreate, {"external_id": "ada"}, "name"),
        (CustomerCreate, {"email": "ada@example.com"}, "external_id"),
        (CustomerCreate, {"external_id": "ada"}, "phone"),
        (CustomerCreate, {"external_id": "ada"}, "referred_by"),
        (CustomerPatch, {}, "name"),
        (
            TransactionCreate,
            {"customer_id": "c", "amount": "1", "currency": "EUR", "occurred_at": "2026-01-01T00:00:00Z"},
            "external_id",
        ),
        (StakeholderCreate, {"kind": "partner", "name": "Fjord"}, "organisation"),
        (StakeholderCreate, {"kind": "partner"}, "name"),
        (OfferCreate, {"customer_id": "c", "kind": "discount"}, "title"),
    ):
        ((loc, message),) = refused(model, {**base, field: f"Ada{char}Lovelace"})
        assert loc == (field,)
        assert message.startswith("Value error, must not contain a ") and f"U+{ord(char):04X} at position 3" in message


def test_multi_line_texts_keep_line_feeds_and_tabs_but_refuse_the_rest():
    body = {"customer_id": "c", "channel": "email", "direction": "inbound"}
    kept = InteractionCreate.model_validate({**body, "summary": "Called back.\n\tShe wants a refund. "})
    assert kept.summary == "Called back.\n\tShe wants a refund."
    notes = StakeholderCreate.model_validate({"kind": "partner", "name": "Fjord", "notes": "one\ntwo"})
    assert notes.notes == "one\ntwo"
    for char in REFUSED:
        ((loc, _),) = refused(InteractionCreate, {**body, "summary": f"Called{char}back"})
        assert loc == ("summary",)
    assert refused(InteractionCreate, {**body, "summary": "a\rb"})  # a line feed alone ends a line


def test_the_refused_characters_are_exactly_c0_c1_del_and_bidi_formatting():
    for code in range(0x3000):
        char = chr(code)
        control = code < 0x20 or 0x7F <= code <= 0x9F
        bidi = code in (0x200E, 0x200F) or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
        assert bool(NOT_IN_A_LINE.search(char)) == (control or bidi), hex(code)
        assert bool(NOT_IN_TEXT.search(char)) == ((control or bidi) and char not in "\n\t"), hex(code)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example",
        "ada@@example.com",
        "Ada <ada@example.com>",
        "ada@exa mple.com",
        "ada@x.test",
        ".ada@example.com",
        "ada@-example.com",
        "ada\x00@example.com",
    ],
)
def test_emails_follow_email_validators_syntax_rules(address):
    ((loc, message),) = refused(CustomerCreate, {"email": address})
    assert loc == ("email",) and ("not a valid email address" in message or "must not contain" in message)


def test_an_email_is_kept_as_written_trimmed():
    assert CustomerCreate.model_validate({"email": "  Ada.Lovelace@Example.COM "}).email == "Ada.Lovelace@Example.COM"
    assert CustomerCreate.model_validate({"email": "zoë@exämple.com"}).email == "zoë@exämple.com"  # no DNS asked


async def test_the_api_names_the_field(suite):
    identify = await suite.start("identify")
    client = identify.client
    for body, field in (
        ({"email": "ada\x00@example.com"}, "body.email"),
        ({"external_id": "ada", "name": "Ada \u202eecalevol"}, "body.name"),
    ):
        response = await client.post("/v1/customers", json=body)
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["detail"]] == [field]
    unknown = await client.post(
        "/v1/transactions",
        json={"customer_id": "a\x00b", "amount": "1", "currency": "EUR", "occurred_at": "2026-01-01T00:00:00Z"},
    )
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"
    nul_path = await client.get("/v1/customers/a%00b")
    assert nul_path.status_code == 404 and nul_path.json()["error"] == "not_found"
