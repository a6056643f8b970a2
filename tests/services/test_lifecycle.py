"""lifecycle against a real nats-server and database, fed by the real identify service."""

from __future__ import annotations

import json

import nats

from shared.events import make_event
from tests.support import wait_until


async def _stage(client, customer_id, stage):
    response = await client.get(f"/v1/customers/{customer_id}/lifecycle")
    return response.json() if response.status_code == 200 and response.json()["stage"] == stage else None


def _purchase(customer_id, n):
    return {"customer_id": customer_id, "amount": "10.00", "currency": "USD",
            "occurred_at": f"2026-01-0{n}T10:00:00Z", "external_id": f"{customer_id}-{n}"}


async def test_a_customer_moves_from_prospect_to_new_to_active(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    customer = (await identify.client.post("/v1/customers", json={"email": "x@example.com"})).json()
    await wait_until(lambda: _stage(lifecycle.client, customer["id"], "prospect"), what="prospect")

    first = await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 1))
    assert first.status_code == 201
    await wait_until(lambda: _stage(lifecycle.client, customer["id"], "new"), what="new")
    await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 2))
    body = await wait_until(lambda: _stage(lifecycle.client, customer["id"], "active"), what="active")
    assert [(h["from"], h["to"]) for h in body["history"]] == [(None, "prospect"), ("prospect", "new"), ("new", "active")]
    assert body["purchase_count"] == 2
    assert all(h["event_id"] for h in body["history"])

    # A third purchase changes nothing: active stays active, no new transition.
    await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 3))
    await wait_until(lambda: _count(lifecycle.client, customer["id"], 3), what="third purchase counted")
    again = (await lifecycle.client.get(f"/v1/customers/{customer['id']}/lifecycle")).json()
    assert len(again["history"]) == 3

    nc = await nats.connect(suite.nats.url)
    try:
        sub = await nc.jetstream().pull_subscribe("crm.lifecycle.stage.changed", stream="CRM")
        events = [json.loads(m.data) for m in await sub.fetch(10, timeout=2)]
    finally:
        await nc.close()
    assert [(e["data"]["from_stage"], e["data"]["to_stage"]) for e in events] == [
        (None, "prospect"), ("prospect", "new"), ("new", "active")
    ]
    assert [e["data"]["cause_event_id"] for e in events] == [h["event_id"] for h in body["history"]]
    assert all(e["subject"] == customer["id"] and e["causationid"] == e["data"]["cause_event_id"] for e in events)


async def _count(client, customer_id, n):
    body = (await client.get(f"/v1/customers/{customer_id}/lifecycle")).json()
    return body["purchase_count"] >= n


async def test_a_purchase_for_a_customer_lifecycle_never_saw_still_places_it(suite):
    lifecycle = await suite.start("lifecycle")
    event = make_event(
        service="identify",
        type="crm.identify.transaction.recorded",
        data={"id": "t-1", "customer_id": "stranger", "amount": "5", "currency": "EUR",
              "occurred_at": "2026-01-01T00:00:00Z", "purchase_count": 2},
        subject="stranger",
    )
    nc = await nats.connect(suite.nats.url)
    await nc.jetstream().publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id})
    await nc.close()
    body = await wait_until(lambda: _stage(lifecycle.client, "stranger", "active"), what="placed as active")
    assert [(h["from"], h["to"]) for h in body["history"]] == [(None, "active")]


async def test_an_unknown_customer_is_404(suite):
    lifecycle = await suite.start("lifecycle")
    response = await lifecycle.client.get("/v1/customers/nobody/lifecycle")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
