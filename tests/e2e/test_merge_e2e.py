"""End to end: two records of one person found, merged through the gateway, and the
survivor's 360 view shows everything both had (the running suite, `valuechain run`)."""

from __future__ import annotations

import asyncio
import secrets

from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when


async def test_a_merge_through_the_gateway_brings_everything_to_the_survivors_360(running_suite):
    async with running_suite.client() as gw:

        async def create(**body) -> dict:
            response = await gw.post("/v1/customers", json=body)
            assert response.status_code == 201, response.text
            return response.json()

        async def buy(customer_id: str, order: str) -> None:
            response = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": customer_id,
                    "amount": "20.00",
                    "currency": "USD",
                    "occurred_at": "2026-10-01T10:00:00Z",
                    "external_id": order,
                },
            )
            assert response.status_code == 201, response.text

        # The shared suite holds other customers: this pair's email, phone and names are its own.
        tag = unique("")
        phone = f"20 7946 0{secrets.randbelow(1000):03d}"
        ada = await create(email=f"ada.lovelace.{tag}@gmail.com", name=f"Ada Lovelace {tag}", phone=f"+44 {phone}")
        twin = await create(
            email=f"adalovelace{tag}+shop@googlemail.com", name=f"Ada Lovelase {tag}", phone=f"0044 {phone}"
        )
        friend = await create(email=unique_email("friend"), referred_by=twin["id"])
        await buy(ada["id"], f"ada-{tag}")
        await buy(twin["id"], f"twin-{tag}")
        # engage learns of a customer from crm.identify.customer.created: until that event
        # is consumed it answers 422 for the id, so ask again until it knows the twin.
        interaction = None
        for _ in range(200):
            interaction = await gw.post(
                "/v1/interactions",
                json={
                    "customer_id": twin["id"],
                    "channel": "chat",
                    "direction": "inbound",
                    "summary": "Where is my parcel?",
                },
            )
            if interaction.status_code != 422:
                break
            await asyncio.sleep(0.05)
        assert interaction.status_code == 201, interaction.text
        for who in (ada, twin):
            await _json_when(gw, f"/v1/customers/{who['id']}/offers", lambda b: len(b["items"]) == 1, "welcome offer")
            await _json_when(gw, f"/v1/customers/{who['id']}/lifecycle", lambda b: b["stage"] == "new", "stage new")
        await _json_when(gw, f"/v1/customers/{twin['id']}/referrals", lambda b: len(b["items"]) == 1, "referral")
        await _json_when(
            gw,
            f"/v1/customers/{twin['id']}/timeline",
            lambda b: "crm.engage.interaction.logged" in {i["type"] for i in b["items"]},
            "twin timeline",
        )

        duplicates = (await gw.get(f"/v1/customers/{ada['id']}/duplicates")).json()["items"]
        assert duplicates[0]["customer"]["id"] == twin["id"]  # the best match of all the suite's customers
        assert duplicates[0]["reasons"] == [
            "same email after normalisation",
            "same phone (E.164)",
            "similar name (distance 1)",
        ]

        merged = await gw.post(f"/v1/customers/{ada['id']}/merge", json={"merge": [twin["id"]]})
        assert merged.status_code == 200, merged.text
        assert merged.json()["purchase_count"] == 2

        await _json_when(gw, f"/v1/customers/{ada['id']}/lifecycle", lambda b: b["stage"] == "active", "active")
        await _json_when(gw, f"/v1/customers/{ada['id']}/offers", lambda b: len(b["items"]) == 2, "offers moved")
        await _json_when(gw, f"/v1/customers/{ada['id']}/referrals", lambda b: len(b["items"]) == 1, "referral moved")
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: "crm.identify.customer.merged" in {i["type"] for i in b["items"]},
            "merge entry",
        )

        view = (await gw.get(f"/v1/customers/{ada['id']}/360")).json()
        assert view["missing"] == []
        assert view["customer"]["id"] == ada["id"] and view["customer"]["purchase_count"] == 2
        assert view["lifecycle"]["stage"] == "active"
        assert [o["kind"] for o in view["offers"]] == ["welcome", "welcome"]
        assert [r["referred_id"] for r in view["referrals"]] == [friend["id"]]
        types = {item["type"] for item in view["timeline"]}
        assert {"crm.identify.customer.merged", "crm.engage.interaction.logged"} <= types
        transactions = (await gw.get(f"/v1/customers/{ada['id']}/transactions")).json()["items"]
        assert sorted(t["external_id"] for t in transactions) == [f"ada-{tag}", f"twin-{tag}"]

        # The merged record points frontends at the survivor; the other parts of its 360 are empty.
        old = (await gw.get(f"/v1/customers/{twin['id']}/360")).json()
        assert old["customer"]["merged_into"] == ada["id"]
        assert old["lifecycle"] is None and old["offers"] == [] and old["referrals"] == [] and old["timeline"] == []
        refused = await gw.patch(f"/v1/customers/{twin['id']}", json={"name": "Ada L."})
        assert refused.status_code == 409 and ada["id"] in refused.json()["detail"]
