"""End to end through the gateway (the running suite, `valuechain run`): a customer's network
of stakeholders, on its timeline and in its 360 view, and a partner's key that sees only its
own customers with their revenue, never another partner's."""

from __future__ import annotations

import httpx

from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when


async def test_a_customers_network_and_a_partners_own_customers_through_the_gateway(running_suite):
    async with running_suite.client() as gw:

        async def post(path: str, body: dict) -> dict:
            response = await gw.post(path, json=body)
            assert response.status_code == 201, (path, response.text)
            return response.json()

        ada = await post("/v1/customers", {"email": unique_email("ada"), "name": "Ada"})
        bob = await post("/v1/customers", {"email": unique_email("bob"), "name": "Bob"})
        for order, (who, amount) in enumerate(((ada, "120.00"), (bob, "80.00"))):
            await post(
                "/v1/transactions",
                {
                    "customer_id": who["id"],
                    "amount": amount,
                    "currency": "USD",
                    "occurred_at": "2026-11-01T10:00:00Z",
                    "external_id": unique(f"net-{order}-"),
                },
            )
        acme = await post("/v1/stakeholders", {"kind": "partner", "name": unique("Acme ")})
        bolt = await post("/v1/stakeholders", {"kind": "reseller", "name": unique("Bolt ")})
        dana = await post("/v1/stakeholders", {"kind": "employee", "name": unique("Dana ")})
        for who in (ada, bob):
            await _json_when(gw, f"/v1/customers/{who['id']}/network", lambda b: True, "network knows the customer")
        manager = await post(
            f"/v1/customers/{ada['id']}/relations", {"stakeholder_id": dana["id"], "relation": "account_manager_of"}
        )
        await post(f"/v1/customers/{ada['id']}/relations", {"stakeholder_id": acme["id"], "relation": "reseller_of"})
        await post(f"/v1/customers/{bob['id']}/relations", {"stakeholder_id": bolt["id"], "relation": "reseller_of"})

        timeline = await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: sum(i["type"] == "crm.network.relation.started" for i in b["items"]) == 2,
            "the relations on the timeline",
        )
        assert f"Account manager: employee {dana['id']}" in {i["summary"] for i in timeline["items"]}
        view = (await gw.get(f"/v1/customers/{ada['id']}/360")).json()
        assert view["missing"] == []
        assert {(r["relation"], r["stakeholder"]["name"]) for r in view["network"]["current"]} == {
            ("account_manager_of", dana["name"]),
            ("reseller_of", acme["name"]),
        }
        assert manager["id"] in {r["id"] for r in view["network"]["history"]}

        made = await gw.post("/v1/api-keys", json={"name": "acme", "role": "partner", "partner_id": acme["id"]})
        assert made.status_code == 201, made.text
        async with httpx.AsyncClient(
            base_url=running_suite.gateway_url, headers={"Authorization": f"Bearer {made.json()['key']}"}, timeout=10
        ) as partner:
            mine = await _json_when(
                partner,
                f"/v1/stakeholders/{acme['id']}/customers",
                lambda b: b["revenue"] == 120.0,
                "Acme's customer's revenue",
            )
            assert [c["customer_id"] for c in mine["items"]] == [ada["id"]] and mine["customers"] == 1
            assert (await partner.get(f"/v1/stakeholders/{bolt['id']}/customers")).status_code == 404
            assert (await partner.get(f"/v1/customers/{bob['id']}/network")).status_code == 404
            own = (await partner.get(f"/v1/customers/{ada['id']}/network")).json()
            assert [r["stakeholder_id"] for r in own["current"]] == [acme["id"]]  # not Dana
            ranked = (await partner.get("/v1/stakeholders/performance")).json()["items"]
            assert [(p["stakeholder_id"], p["revenue"]) for p in ranked] == [(acme["id"], 120.0)]
            # A partner's key cannot change the network.
            refused = await partner.post(
                f"/v1/customers/{bob['id']}/relations", json={"stakeholder_id": acme["id"], "relation": "introduced"}
            )
            assert refused.status_code == 403

        # The suite is shared: other tests' partners rank too; resellers and employees do not.
        ranked = (await gw.get("/v1/stakeholders/performance", params={"kind": "partner"})).json()["items"]
        assert acme["id"] in {p["stakeholder_id"] for p in ranked}
        assert not {bolt["id"], dana["id"]} & {p["stakeholder_id"] for p in ranked}
