"""network against a real nats-server and real databases: stakeholders, and referrals
recorded from identify's customer.created events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import nats
import pytest

from tests.support import wait_until


async def stream_events(nats_url: str, subject: str) -> list[dict]:
    """Every event stored in the CRM stream on `subject` (an ephemeral consumer reads them)."""

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, stream="CRM")
        events: list[dict] = []
        try:
            while True:
                msgs = await sub.fetch(100, timeout=0.5)
                events.extend(json.loads(m.data) for m in msgs)
                for m in msgs:
                    await m.ack()
        except (TimeoutError, nats.errors.TimeoutError):  # nats-py raises either
            pass
        return events
    finally:
        await nc.close()


async def start(suite, name: str):
    """Start a service and touch its database once before any event reaches it.

    Works around a race in shared/db/database.py: the first reader and the first writer
    connection both switch a fresh SQLite file to WAL, and when they do it at the
    same moment one of them fails with "database is locked".
    """

    handle = await suite.start(name)
    ready = await handle.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    return handle


async def all_pages(client, path: str, **params) -> tuple[list[dict], int]:
    items, cursor, pages = [], None, 0
    while True:
        response = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


# --- stakeholders -------------------------------------------------------------------------


async def test_stakeholders_are_created_read_and_listed(suite):
    network = await start(suite, "network")
    created = []
    for kind, name in [
        ("partner", "Acme Resellers"),
        ("supplier", "Beans & Co"),
        ("partner", "Cargo Partners"),
        ("employee", "Dana Smith"),
        ("investor", "Evergreen Capital"),
    ]:
        response = await network.client.post("/v1/stakeholders", json={"kind": kind, "name": name})
        assert response.status_code == 201, response.text
        created.append(response.json())

    full = await network.client.post(
        "/v1/stakeholders",
        json={
            "kind": "supplier",
            "name": "  Fjord Foods ",
            "email": " orders@fjord.example ",
            "organisation": "Fjord Group",
            "notes": "Net 30",
        },
    )
    assert full.status_code == 201, full.text
    fjord = full.json()
    assert {k: fjord[k] for k in ("kind", "name", "email", "organisation", "notes")} == {
        "kind": "supplier",
        "name": "Fjord Foods",
        "email": "orders@fjord.example",
        "organisation": "Fjord Group",
        "notes": "Net 30",
    }
    assert created[0]["email"] is None and created[0]["organisation"] is None and created[0]["notes"] is None
    created.append(fjord)

    response = await network.client.get(f"/v1/stakeholders/{fjord['id']}")
    assert response.status_code == 200
    assert response.json() == fjord
    missing = await network.client.get("/v1/stakeholders/01890000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"

    everyone, pages = await all_pages(network.client, "/v1/stakeholders", limit=2)
    assert pages == 3
    assert everyone == created  # oldest first

    partners, _ = await all_pages(network.client, "/v1/stakeholders", kind="partner", limit=1)
    assert [s["name"] for s in partners] == ["Acme Resellers", "Cargo Partners"]
    suppliers = (await network.client.get("/v1/stakeholders", params={"kind": "supplier"})).json()
    assert [s["name"] for s in suppliers["items"]] == ["Beans & Co", "Fjord Foods"]
    assert suppliers["next_cursor"] is None

    bad_kind = await network.client.get("/v1/stakeholders", params={"kind": "customer"})
    assert bad_kind.status_code == 422
    assert bad_kind.json()["detail"][0]["field"] == "query.kind"
    bad_cursor = await network.client.get("/v1/stakeholders", params={"cursor": "%%%"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["detail"][0]["field"] == "query.cursor"
    assert (await network.client.get("/v1/stakeholders", params={"limit": 201})).status_code == 422

    async def all_announced():
        events = await stream_events(suite.nats.url, "crm.network.stakeholder.created")
        return events if len(events) >= len(created) else None

    events = await wait_until(all_announced, what="every stakeholder.created on JetStream")
    assert [e["data"]["id"] for e in events] == [s["id"] for s in created]
    last = events[-1]
    assert "subject" not in last  # not about a customer
    assert last["data"] == {
        "id": fjord["id"],
        "kind": "supplier",
        "name": "Fjord Foods",
        "email": "orders@fjord.example",
        "created_at": last["data"]["created_at"],
    }
    assert datetime.fromisoformat(last["data"]["created_at"]) == datetime.fromisoformat(fjord["created_at"])


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "customer", "name": "X"}, "body.kind"),
        ({"name": "X"}, "body.kind"),
        ({"kind": "partner"}, "body.name"),
        ({"kind": "partner", "name": "   "}, "body.name"),
        ({"kind": "partner", "name": "x" * 201}, "body.name"),
        ({"kind": "partner", "name": "X", "email": "not-an-email"}, "body.email"),
        ({"kind": "partner", "name": "X", "organisation": ""}, "body.organisation"),
        ({"kind": "partner", "name": "X", "phone": "123"}, "body.phone"),
    ],
)
async def test_invalid_stakeholders_are_refused(suite, body, field):
    network = await start(suite, "network")
    response = await network.client.post("/v1/stakeholders", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert field in [error["field"] for error in response.json()["detail"]]
    assert (await network.client.get("/v1/stakeholders")).json()["items"] == []


# --- referrals ------------------------------------------------------------------------------


async def test_a_referred_customer_shows_on_the_referrers_list_and_on_jetstream(suite):
    identify = await start(suite, "identify")
    network = await start(suite, "network")

    async def create(**body) -> dict:
        response = await identify.client.post("/v1/customers", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    ada = await create(email="ada@example.com")
    bob = await create(email="bob@example.com", referred_by=ada["id"])
    cy = await create(email="cy@example.com", referred_by=ada["id"])
    dee = await create(email="dee@example.com", referred_by=bob["id"])

    async def referrals_of(customer: dict, count: int):
        response = await network.client.get(f"/v1/customers/{customer['id']}/referrals")
        if response.status_code != 200 or len(response.json()["items"]) < count:
            return None
        return response.json()

    page = await wait_until(lambda: referrals_of(ada, 2), what="Ada's referrals")
    assert page["next_cursor"] is None
    assert [r["referred_id"] for r in page["items"]] == [bob["id"], cy["id"]]
    assert datetime.fromisoformat(page["items"][0]["recorded_at"]) >= datetime.fromisoformat(bob["created_at"])
    assert datetime.fromisoformat(page["items"][1]["recorded_at"]) <= datetime.now(UTC)
    bobs = await wait_until(lambda: referrals_of(bob, 1), what="Bob's referrals")
    assert [r["referred_id"] for r in bobs["items"]] == [dee["id"]]

    # Known customers who referred nobody have an empty list; strangers are 404.
    cys = await wait_until(lambda: referrals_of(cy, 0), what="network to know Cy")
    assert cys == {"items": [], "next_cursor": None}
    unknown = await network.client.get("/v1/customers/no-such-customer/referrals")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"

    one_by_one, pages = await all_pages(network.client, f"/v1/customers/{ada['id']}/referrals", limit=1)
    assert pages == 2
    assert one_by_one == page["items"]

    async def all_recorded():
        events = await stream_events(suite.nats.url, "crm.network.referral.recorded")
        return events if len(events) >= 3 else None

    events = await wait_until(all_recorded, what="every referral.recorded on JetStream")
    recorded = {e["data"]["referred_id"]: e for e in events}
    assert set(recorded) == {bob["id"], cy["id"], dee["id"]}
    to_bob = recorded[bob["id"]]
    assert to_bob["subject"] == ada["id"]
    assert to_bob["source"] == "/valuechain/network"
    assert to_bob["dataschema"] == "http://127.0.0.1:8000/v1/schemas/crm.network.referral.recorded/v1.json"
    assert to_bob["data"]["id"] == page["items"][0]["id"]
    assert to_bob["data"]["referrer_id"] == ada["id"]
    assert recorded[dee["id"]]["subject"] == bob["id"]
    # The referral was caused by Bob's customer.created and carries its correlation id.
    created = {e["data"]["id"]: e for e in await stream_events(suite.nats.url, "crm.identify.customer.created")}
    assert to_bob["causationid"] == created[bob["id"]]["id"]
    assert to_bob["correlationid"] == created[bob["id"]]["correlationid"]
