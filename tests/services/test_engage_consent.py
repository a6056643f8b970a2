"""engage's consent API against a real engage database fed by a real identify over a real
nats-server: one entry, a customer's consent, batches, and the unsubscribe link's pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.engage.consent.links import unsubscribe_url
from services.engage.models import erased_customers
from services.engage.outbound.queue import queue_email
from shared.http.errors import Conflict
from shared.signed_links import SignedLinks
from tests.services.test_engage import create_customer, iso, known_to_engage, start
from tests.services.test_lifecycle import _read_stream
from tests.support import wait_until

GRANT = {"purpose": "marketing", "channel": "email", "granted": True, "legal_basis": "consent"}


async def _customer(identify, engage, **body) -> dict:
    customer = await create_customer(identify, **body)
    await known_to_engage(engage, customer["id"])
    return customer


async def _consent(engage, customer_id: str, **params) -> dict:
    response = await engage.client.get(f"/v1/customers/{customer_id}/consent", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def services(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    return identify, engage


async def test_record_and_read_consent_with_its_history(suite, services):
    identify, engage = services
    ada = await _customer(identify, engage, email="ada@example.com", name="Ada")
    empty = await _consent(engage, ada["id"])
    assert (empty["current"], empty["items"], empty["next_cursor"]) == ([], [], None)

    granted = await engage.client.post(
        f"/v1/customers/{ada['id']}/consent", json={**GRANT, "source": "web_form", "notice_version": "2026-01"}
    )
    assert granted.status_code == 201, granted.text
    entry = granted.json()
    assert entry["customer_id"] == ada["id"] and entry["source"] == "web_form" and entry["granted"] is True
    # Back-dated: joins the history, leaves the state; a research grant by phone without a source: `api`.
    old = iso(datetime.now(UTC) - timedelta(days=400))
    back = await engage.client.post(
        f"/v1/customers/{ada['id']}/consent", json={**GRANT, "granted": False, "changed_at": old}
    )
    assert back.status_code == 201, back.text
    research = await engage.client.post(
        f"/v1/customers/{ada['id']}/consent",
        json={"purpose": "research", "channel": "phone", "granted": True, "legal_basis": "legitimate_interest"},
    )
    assert research.json()["source"] == "api"

    body = await _consent(engage, ada["id"])
    assert [(s["purpose"], s["channel"], s["granted"], s["entry_id"]) for s in body["current"]] == [
        ("marketing", "email", True, entry["id"]),
        ("research", "phone", True, research.json()["id"]),
    ]
    assert [i["id"] for i in body["items"]] == [research.json()["id"], entry["id"], back.json()["id"]]
    first = await _consent(engage, ada["id"], limit=2)
    rest = await _consent(engage, ada["id"], limit=2, cursor=first["next_cursor"])
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in body["items"]]
    assert rest["next_cursor"] is None and rest["current"] == body["current"]

    # The customer's export shows the ledger and the state (no personal columns: it outlives an erasure).
    export = (await engage.client.get(f"/internal/customers/{ada['id']}/personal-data")).json()
    tables = {table["table"]: table for table in export["tables"]}
    assert len(tables["consent_ledger"]["rows"]) == 3 and len(tables["consent_state"]["rows"]) == 2
    assert tables["consent_ledger"]["personal"] == {} and tables["consent_state"]["personal"] == {}

    events = await _read_stream(suite.nats.url, "crm.engage.consent.changed", 3)
    assert [e["data"]["id"] for e in events] == [entry["id"], back.json()["id"], research.json()["id"]]
    assert events[0]["subject"] == ada["id"] and events[0]["data"]["notice_version"] == "2026-01"


@pytest.fixture(scope="module")
async def ada_known_to_engage(module_suite):
    """identify and engage started once for the refusals below (each writes nothing), and Ada."""

    identify = await start(module_suite, "identify")
    engage = await start(module_suite, "engage")
    return engage, await _customer(identify, engage, email="ada@example.com")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"legal_basis": "because"}, "body.legal_basis"),
        ({"purpose": "spam"}, "body.purpose"),
        ({"channel": "pigeon"}, "body.channel"),
        ({"source": "my web form"}, "body.source"),  # a code, never free text: the ledger outlives erasure
        ({"notice_version": "x" * 41}, "body.notice_version"),
        ({"changed_at": "2999-01-01T00:00:00Z"}, "body.changed_at"),
        ({"changed_at": "2026-01-01T00:00:00"}, "body.changed_at"),
        ({"changed_at": 1700000000}, "body.changed_at"),
        ({"colour": "blue"}, "body.colour"),
        ({"granted": 0}, "body.granted"),  # JSON false, not a number
    ],
)
async def test_a_bad_entry_is_422_naming_its_field_and_writes_nothing(ada_known_to_engage, change, field):
    engage, ada = ada_known_to_engage
    refused = await engage.client.post(f"/v1/customers/{ada['id']}/consent", json={**GRANT, **change})
    assert refused.status_code == 422, refused.text
    assert field in {d["field"] for d in refused.json()["detail"]}
    assert (await _consent(engage, ada["id"]))["items"] == []


async def test_unknown_and_merged_customers(suite, services):
    identify, engage = services
    unknown = "0192b1c4-0000-7000-8000-000000000000"
    for response in (
        await engage.client.post(f"/v1/customers/{unknown}/consent", json=GRANT),
        await engage.client.get(f"/v1/customers/{unknown}/consent"),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "not_found")
    survivor = await _customer(identify, engage, email="s@example.com")
    twin = await _customer(identify, engage, email="t@example.com")
    merged = await identify.client.post(f"/v1/customers/{survivor['id']}/merge", json={"merge": [twin["id"]]})
    assert merged.status_code == 200, merged.text

    async def merged_away():
        return (await engage.client.get(f"/v1/customers/{twin['id']}/consent")).status_code == 409

    await wait_until(merged_away, what="engage follows the merge")
    refused = await engage.client.post(f"/v1/customers/{twin['id']}/consent", json=GRANT)
    assert (refused.status_code, refused.json()["error"]) == (409, "customer_merged")
    assert survivor["id"] in refused.json()["detail"]

    batch = await engage.client.post(
        "/v1/consent:batch",
        json={"items": [{**GRANT, "customer_id": twin["id"]}, {**GRANT, "customer_id": survivor["id"]}]},
    )
    assert batch.status_code == 200, batch.text
    items = batch.json()["items"]
    assert items[0]["status"] == "error" and items[0]["error"]["error"] == "customer_merged"
    assert items[1]["status"] == "recorded"


async def test_a_batch_records_the_good_items_and_names_each_bad_one(suite, services):
    identify, engage = services
    ada = await _customer(identify, engage, email="ada@example.com")
    bob = await _customer(identify, engage, email="bob@example.com")
    items = [
        {**GRANT, "customer_id": ada["id"], "source": "old_crm", "changed_at": "2024-03-01T09:00:00Z"},
        {**GRANT, "customer_id": bob["id"], "legal_basis": "whim"},
        {**GRANT, "customer_id": "0192b1c4-0000-7000-8000-000000000000"},
        "not an object",
        {**GRANT, "customer_id": bob["id"], "channel": "sms", "granted": False},
        {**GRANT, "customer_id": ada["id"], "granted": False, "changed_at": "2025-03-01T09:00:00Z"},
    ]
    response = await engage.client.post("/v1/consent:batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["recorded"], body["errors"]) == (3, 3)
    assert [i["status"] for i in body["items"]] == ["recorded", "error", "error", "error", "recorded", "recorded"]
    assert body["items"][1]["error"]["detail"][0]["field"] == "body.items.1.legal_basis"
    assert body["items"][2]["error"]["detail"][0]["field"] == "body.items.2.customer_id"
    assert body["items"][3]["error"]["error"] == "validation_error"
    assert body["items"][0]["entry"]["source"] == "old_crm"
    assert body["items"][4]["entry"]["source"] == "batch"

    # The later entry of the same batch is the state.
    current = (await _consent(engage, ada["id"]))["current"]
    assert [(s["granted"], s["entry_id"]) for s in current] == [(False, body["items"][5]["entry"]["id"])]
    events = await _read_stream(suite.nats.url, "crm.engage.consent.changed", 3)
    assert sorted(e["data"]["id"] for e in events) == sorted(body["items"][i]["entry"]["id"] for i in (0, 4, 5))
    assert {e["subject"] for e in events} == {ada["id"], bob["id"]}

    too_many = await engage.client.post("/v1/consent:batch", json={"items": [items[0]] * 1001})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["field"] == "body.items"


def _token(engage, customer_id: str, channel: str = "email") -> str:
    url = unsubscribe_url(SignedLinks.from_settings(engage.settings), customer_id=customer_id, channel=channel)
    return url.rsplit("/", 1)[1]


async def _marketing(engage, customer_id: str):
    async with engage.runtime.db.writer() as session:
        try:
            message = await queue_email(
                session,
                customer_id=customer_id,
                subject="Spring",
                body="Hello",
                purpose="marketing",
                now=datetime.now(UTC),
            )
        except Conflict as refused:
            return refused.error
        finally:
            await session.rollback()
    return message.status


async def test_the_unsubscribe_link_asks_on_get_and_withdraws_on_post(suite, services):
    identify, engage = services
    ada = await _customer(identify, engage, email="ada@example.com")
    granted = await engage.client.post(f"/v1/customers/{ada['id']}/consent", json=GRANT)
    assert granted.status_code == 201
    assert await _marketing(engage, ada["id"]) == "queued"
    token = _token(engage, ada["id"])

    page = await engage.client.get(f"/v1/unsubscribe/{token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<form method="post">' in page.text and "<script" not in page.text and "ada@" not in page.text
    assert (await _consent(engage, ada["id"]))["current"][0]["granted"] is True  # a GET changes nothing

    # The payload changed (the signature no longer fits), and a good signature over an unknown channel.
    for bad in (f"f{token[1:]}", _token(engage, ada["id"], "carrier")):
        for method in ("GET", "POST"):
            refused = await engage.client.request(method, f"/v1/unsubscribe/{bad}")
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_token")
    wrong_body = await engage.client.post(f"/v1/unsubscribe/{token}", data={"List-Unsubscribe": "Maybe"})
    assert wrong_body.status_code == 422 and wrong_body.json()["detail"][0]["field"] == "body.List-Unsubscribe"
    assert len((await _consent(engage, ada["id"]))["items"]) == 1

    done = await engage.client.post(f"/v1/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "unsubscribed" in done.text
    again = await engage.client.post(f"/v1/unsubscribe/{token}")  # an empty body, as one-click may send
    assert again.status_code == 200
    body = await _consent(engage, ada["id"])
    assert [(s["granted"]) for s in body["current"]] == [False]
    assert [(i["granted"], i["source"], i["legal_basis"]) for i in body["items"]] == [
        (False, "unsubscribe_link", "consent"),
        (True, "api", "consent"),
    ]
    assert await _marketing(engage, ada["id"]) == "no_consent"


async def test_an_unsubscribe_link_of_a_merged_customer_applies_to_the_survivor_and_of_an_erased_one_to_no_one(
    suite, services
):
    identify, engage = services
    survivor = await _customer(identify, engage, email="s@example.com")
    twin = await _customer(identify, engage, email="t@example.com")
    gone = await _customer(identify, engage, email="g@example.com")
    for customer in (survivor, gone):
        assert (await engage.client.post(f"/v1/customers/{customer['id']}/consent", json=GRANT)).status_code == 201
    merged = await identify.client.post(f"/v1/customers/{survivor['id']}/merge", json={"merge": [twin["id"]]})
    assert merged.status_code == 200

    async def merged_away():
        return (await engage.client.get(f"/v1/customers/{twin['id']}/consent")).status_code == 409

    await wait_until(merged_away, what="engage follows the merge")
    assert (await engage.client.post(f"/v1/unsubscribe/{_token(engage, twin['id'])}")).status_code == 200
    assert [s["granted"] for s in (await _consent(engage, survivor["id"]))["current"]] == [False]

    erasure = await identify.client.post(f"/v1/customers/{gone['id']}/erasure")
    assert erasure.status_code == 202, erasure.text

    async def erased_in_engage():
        async with engage.runtime.db.reader() as session:
            return await erased_customers.among(session, {gone["id"]})

    await wait_until(erased_in_engage, what="engage applies the erasure")
    assert (await engage.client.post(f"/v1/unsubscribe/{_token(engage, gone['id'])}")).status_code == 200
    # The proof of consent stays, unchanged by the link.
    kept = await _consent(engage, gone["id"])
    assert [(i["granted"], i["source"]) for i in kept["items"]] == [(True, "api")]
