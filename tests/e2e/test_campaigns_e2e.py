"""End to end through the gateway: an offer template, a campaign to consenting customers,
its launch, the customer's promotions in the 360 view, and the results after a purchase."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nats

from tests.e2e.harness import unique, unique_email
from tests.services.test_engage import catalog_event
from tests.support import wait_until

# The purchases' time: the audience asks for a last purchase around it, so no other test's
# customer in the shared suite (new, with consent) is in it.
BOUGHT_AT = "2026-09-17T10:11:12Z"


async def test_a_campaign_reaches_consenting_customers_and_is_measured_through_the_gateway(running_suite):
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada")})).json()
        bob = (await gw.post("/v1/customers", json={"email": unique_email("bob")})).json()
        for who in (ada, bob):
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": who["id"],
                    "amount": "20",
                    "currency": "USD",
                    "occurred_at": BOUGHT_AT,
                },
            )
            assert bought.status_code == 201, bought.text
        # engage's consent events (its consent API is another helper's part): only Ada consents.
        consent = catalog_event(
            "engage",
            "crm.engage.consent.changed",
            {
                "id": unique("consent-ada-"),
                "customer_id": ada["id"],
                "purpose": "marketing",
                "channel": "email",
                "granted": True,
                "legal_basis": "consent",
                "source": "api",
                "changed_at": "2026-10-02T00:00:00Z",
            },
            ada["id"],
        )
        nc = await nats.connect(running_suite.nats_url)
        try:
            await nc.jetstream().publish(consent.type, consent.to_json(), headers={"Nats-Msg-Id": consent.id})
        finally:
            await nc.close()

        template = await gw.post(
            "/v1/offer-templates",
            json={
                "kind": "amount_off",
                "title": "5 off",
                "amount_off": {"amount": "5", "currency": "USD"},
                "cost": "1",
            },
        )
        assert template.status_code == 201, template.text
        campaign = await gw.post(
            "/v1/campaigns",
            json={
                "name": "Autumn",
                "channel": "email",
                "template_id": template.json()["id"],
                "subject": "For you",
                "body": "Code {{ offer_code }}",
                "audience": {
                    "stages": ["new"],
                    "last_purchase_after": "2026-09-17T10:11:11Z",
                    "last_purchase_before": "2026-09-17T10:11:13Z",
                },
                "holdout_share": 0,
            },
        )
        assert campaign.status_code == 201, campaign.text
        cid = campaign.json()["id"]

        async def only_ada():
            preview = (await gw.post(f"/v1/campaigns/{cid}/preview")).json()
            return preview if preview["count"] == 1 else None

        preview = await wait_until(only_ada, timeout=20, what="Ada's consent and stage in value")
        assert preview["sample"][0]["customer_id"] == ada["id"]
        launched = await gw.post(f"/v1/campaigns/{cid}/launch")
        assert launched.status_code == 200 and launched.json()["treatment"] == 1, launched.text

        view = (await gw.get(f"/v1/customers/{ada['id']}/360")).json()
        assert [p["campaign_id"] for p in view["promotions"]] == [cid]
        assert (await gw.get(f"/v1/customers/{bob['id']}/360")).json()["promotions"] == []

        after = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        bought = await gw.post(
            "/v1/transactions", json={"customer_id": ada["id"], "amount": "30", "currency": "USD", "occurred_at": after}
        )
        assert bought.status_code == 201, bought.text

        async def measured():
            results = (await gw.get(f"/v1/campaigns/{cid}/results")).json()
            return results if results["treatment"]["converted"] == 1 else None

        results = await wait_until(measured, timeout=20, what="the purchase in the results")
        assert results["treatment"]["revenue"] == 30.0 and results["holdout"]["customers"] == 0
