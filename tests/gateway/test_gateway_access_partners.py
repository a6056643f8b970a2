"""Partners see only their own: partner keys through the real gateway in front of the real
network service (its own database, a real nats-server), trying each other's ids."""

from __future__ import annotations

import contextlib

from gateway.access.roles import ANY_CALLER, ROLES
from gateway.routes import ROUTES
from tests.gateway.conftest import AUTH, serve
from tests.services.test_value_campaigns import _created, _publish_all
from tests.support import wait_until

# Every (method, pattern) a partner key may reach, and how this test tries it with another
# partner's ids. A route a partner can newly reach fails the first assertion until it is
# added here, with its check.
PARTNER_REACHABLE = {
    ("GET", "/v1/stakeholders"),
    ("GET", "/v1/stakeholders/{id}"),
    ("GET", "/v1/me"),
    # The referral programme's terms: the same for every caller, nothing in them is a partner's.
    ("GET", "/v1/referral-programme"),
    # The event feed is the same for every partner (public events, not a partner's resources);
    # what narrows it is the key's allowed event types: tests/e2e/test_event_feed_e2e.py.
    ("GET", "/v1/events"),
    ("GET", "/v1/stakeholders/performance"),
    ("GET", "/v1/stakeholders/{id}/customers"),
    ("GET", "/v1/customers/{id}/relations"),
    ("GET", "/v1/customers/{id}/network"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
    ("POST", "/v1/webhooks/{id}/replay"),
}
# How each webhook route is tried with the other partner's subscription (method, suffix, body).
OTHERS_WEBHOOK = [
    ("GET", "", None),
    ("PATCH", "", {"description": "mine now"}),
    ("DELETE", "", None),
    ("POST", "/rotate-secret", None),
    ("GET", "/deliveries", None),
    ("POST", "/deliveries/any/retry", None),
    ("POST", "/replay", {"after": "0"}),
]


def test_the_partner_reachable_routes_are_the_ones_this_file_checks():
    reachable = {
        (method, route.pattern)
        for route in ROUTES
        for method, scope in route.scopes.items()
        if scope == ANY_CALLER or scope in ROLES["partner"]
    }
    assert reachable == PARTNER_REACHABLE


async def test_a_partner_never_sees_another_partners_resources(suite, start_gateway):
    network = await suite.start("network", webhook_allow_hosts=("127.0.0.1",))
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(network.app, lifespan="off"))
        # The suite's internal secret: the network service answers only a gateway that sends it.
        gw = await start_gateway(network_url=url, internal_secret=suite.internal_headers["x-valuechain-internal"])

        async def stakeholder(kind: str, name: str) -> dict:
            response = await gw.post("/v1/stakeholders", json={"kind": kind, "name": name}, headers=AUTH)
            assert response.status_code == 201, response.text
            return response.json()

        acme, bolt = await stakeholder("partner", "Acme"), await stakeholder("partner", "Bolt")
        supplier = await stakeholder("supplier", "Cargo")
        tokens = {}
        for partner in (acme, bolt):
            made = await gw.post(
                "/v1/api-keys",
                json={"name": partner["name"], "role": "partner", "partner_id": partner["id"]},
                headers=AUTH,
            )
            assert made.status_code == 201, made.text
            tokens[partner["id"]] = {"Authorization": f"Bearer {made.json()['key']}"}

        # Each partner resells one customer.
        customer_of = {
            acme["id"]: "00000000-0000-7000-b000-000000000001",
            bolt["id"]: "00000000-0000-7000-b000-000000000002",
        }
        await _publish_all(suite.nats.url, [_created(cid) for cid in customer_of.values()])
        for partner_id, cid in customer_of.items():

            async def related(cid=cid, partner_id=partner_id):
                body = {"stakeholder_id": partner_id, "relation": "reseller_of"}
                response = await gw.post(f"/v1/customers/{cid}/relations", json=body, headers=AUTH)
                return response.status_code == 201

            await wait_until(related, what="network to know the customer")

        for me, other in ((acme, bolt), (bolt, acme)):
            auth = tokens[me["id"]]
            mine, theirs = customer_of[me["id"]], customer_of[other["id"]]
            # GET /v1/stakeholders/{id}/customers: its own customers; another's stakeholder is 404.
            own = await gw.get(f"/v1/stakeholders/{me['id']}/customers", headers=auth)
            assert own.status_code == 200 and [c["customer_id"] for c in own.json()["items"]] == [mine]
            for hidden in (other["id"], supplier["id"]):
                response = await gw.get(f"/v1/stakeholders/{hidden}/customers", headers=auth)
                assert response.status_code == 404 and response.json()["error"] == "not_found"
            # GET /v1/stakeholders/performance: its own row only.
            ranked = (await gw.get("/v1/stakeholders/performance", headers=auth)).json()["items"]
            assert [p["stakeholder_id"] for p in ranked] == [me["id"]]
            # GET /v1/customers/{id}/network and /relations: its own relations; a customer it has none with is 404.
            network = (await gw.get(f"/v1/customers/{mine}/network", headers=auth)).json()
            assert {r["stakeholder_id"] for r in network["history"]} == {me["id"]}
            assert [r["stakeholder"]["id"] for r in network["current"]] == [me["id"]]
            relations = (await gw.get(f"/v1/customers/{mine}/relations", headers=auth)).json()["items"]
            assert {r["stakeholder_id"] for r in relations} == {me["id"]}
            for path in (f"/v1/customers/{theirs}/network", f"/v1/customers/{theirs}/relations"):
                response = await gw.get(path, headers=auth)
                assert response.status_code == 404 and response.json()["error"] == "not_found"
        hooks = {}
        for partner in (acme, bolt):  # POST /v1/webhooks: made as the partner's own
            made = await gw.post(
                "/v1/webhooks",
                json={"url": "http://127.0.0.1:9/hook", "event_types": ["crm.identify.customer.*"]},
                headers=tokens[partner["id"]],
            )
            assert made.status_code == 201 and made.json()["partner_id"] == partner["id"], made.text
            hooks[partner["id"]] = made.json()
        for me, other in ((acme, bolt), (bolt, acme)):
            auth = tokens[me["id"]]
            # The webhook routes: its own subscription only; the other's is 404 on each.
            listed_hooks = (await gw.get("/v1/webhooks", headers=auth)).json()["items"]
            assert [h["id"] for h in listed_hooks] == [hooks[me["id"]]["id"]]
            for method, suffix, body in OTHERS_WEBHOOK:
                path = f"/v1/webhooks/{hooks[other['id']]['id']}{suffix}"
                response = await gw.request(method, path, json=body, headers=auth)
                assert response.status_code == 404 and response.json()["error"] == "not_found", (method, path)
            # GET /v1/stakeholders: only its own record, whatever the filter.
            listed = await gw.get("/v1/stakeholders", headers=auth)
            assert listed.status_code == 200 and [s["id"] for s in listed.json()["items"]] == [me["id"]]
            filtered = await gw.get("/v1/stakeholders", params={"kind": "supplier"}, headers=auth)
            assert filtered.json()["items"] == []
            # GET /v1/stakeholders/{id}: its own, and 404 for the other partner's (or anyone else's).
            assert (await gw.get(f"/v1/stakeholders/{me['id']}", headers=auth)).json()["name"] == me["name"]
            for hidden in (other["id"], supplier["id"]):
                response = await gw.get(f"/v1/stakeholders/{hidden}", headers=auth)
                assert response.status_code == 404 and response.json()["error"] == "not_found"
            # GET /v1/me: its own partner.
            assert (await gw.get("/v1/me", headers=auth)).json()["partner_id"] == me["id"]
            # GET /v1/referral-programme: the terms everyone reads; changing them is not a partner's.
            terms = await gw.get("/v1/referral-programme", headers=auth)
            assert terms.json() == (await gw.get("/v1/referral-programme", headers=AUTH)).json()
            refused = await gw.put("/v1/referral-programme", json={"window_days": 30}, headers=auth)
            assert refused.status_code == 403, refused.text
        # The admin still sees everyone.
        everyone = (await gw.get("/v1/stakeholders", headers=AUTH)).json()["items"]
        assert {s["id"] for s in everyone} == {acme["id"], bolt["id"], supplier["id"]}
