"""End to end: the event feed (`GET /v1/events`) and the events' public schemas, through the
gateway of the running suite, with partner keys and a key holding pii:read."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.e2e.feed_check import assert_the_whole_feed
from tests.e2e.harness import unique_email
from tests.support import wait_until

CREATED = "crm.identify.customer.created"


async def _key(gw: httpx.AsyncClient, **body) -> dict[str, str]:
    made = await gw.post("/v1/api-keys", json={"name": body.get("role", "key"), **body})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def _feed(gw: httpx.AsyncClient, headers: dict[str, str], **params) -> list[dict]:
    """Every item of the feed for `headers`' key, page by page."""

    items: list[dict] = []
    after = None
    while True:
        response = await gw.get("/v1/events", params={**params, **({"after": after} if after else {})}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return items


async def test_partners_read_the_feed_with_personal_fields_null_and_a_pii_key_with_them(running_suite):
    async with running_suite.client() as gw:
        partner = await gw.post("/v1/stakeholders", json={"kind": "partner", "name": "Acme Integrations"})
        assert partner.status_code == 201, partner.text
        partner_key = await _key(gw, role="partner", partner_id=partner.json()["id"])
        limited_key = await _key(
            gw, role="partner", partner_id=partner.json()["id"], event_types=["crm.identify.transaction.*"]
        )
        manager_key = await _key(gw, role="manager")  # holds events:read and pii:read

        email = unique_email("ada")
        ada = (await gw.post("/v1/customers", json={"email": email, "name": "Ada"})).json()
        purchase = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": ada["id"],
                "amount": "20.00",
                "currency": "USD",
                "occurred_at": "2026-11-01T10:00:00Z",
            },
        )
        assert purchase.status_code == 201, purchase.text

        async def ada_created(headers):
            items = await _feed(gw, headers, types=CREATED)
            return next((i["event"] for i in items if i["event"]["data"]["id"] == ada["id"]), None)

        seen_by_partner = await wait_until(lambda: ada_created(partner_key), what="ada in the partner's feed")
        assert seen_by_partner["data"]["email"] is None and seen_by_partner["data"]["name"] is None
        seen_by_manager = await ada_created(manager_key)
        assert seen_by_manager["data"]["email"] == email and seen_by_manager["data"]["name"] == "Ada"
        assert seen_by_manager["id"] == seen_by_partner["id"]
        assert seen_by_manager["dataschema"].endswith("/v1/schemas/crm.identify.customer.created/v1.json")

        # A key limited to transactions reads only those, and is refused what it may not see.
        limited = await _feed(gw, limited_key)
        assert limited and {i["event"]["type"] for i in limited} <= {
            "crm.identify.transaction.recorded",
            "crm.identify.transaction.refunded",
            "crm.identify.transaction.voided",
        }
        refused = await gw.get("/v1/events", params={"types": CREATED}, headers=limited_key)
        assert refused.status_code == 403 and refused.json()["error"] == "event_type_not_allowed"
        unknown = await gw.get("/v1/events", params={"types": "crm.identify.nothing"}, headers=partner_key)
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "query.types"
        # A key without events:read does not reach the feed at all.
        agent = await _key(gw, role="agent")
        assert (await gw.get("/v1/events", headers=agent)).status_code == 403

        # The schema an event names is served without a key.
        async with httpx.AsyncClient(base_url=running_suite.gateway_url) as anonymous:
            schema = await anonymous.get(urlsplit(seen_by_partner["dataschema"]).path)
            assert schema.status_code == 200 and schema.json()["properties"]["email"]["x-personal"] == "email"


async def test_the_whole_feed_holds_every_public_event_once_in_order(running_suite):
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"email": unique_email("feed")})).json()
        await gw.post(
            "/v1/transactions",
            json={
                "customer_id": customer["id"],
                "amount": "5",
                "currency": "USD",
                "occurred_at": "2026-11-02T10:00:00Z",
            },
        )
        assert await assert_the_whole_feed(gw, running_suite.nats_url) > 0
