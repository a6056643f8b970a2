"""End to end through the gateway: a retention playbook configured in lifecycle, a customer
going quiet (at_risk: here lifecycle's stage change is put on the bus as the sweep would
announce it), value issuing the playbook's offer, the entry on the timeline, the customer
buying again and value's results for the playbook; /v1/playbooks/{id} is lifecycle's and
/v1/playbooks/{id}/results value's, side by side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.services.test_engage import catalog_event
from tests.services.test_lifecycle import _publish
from tests.support import wait_until


async def test_a_customer_going_quiet_gets_the_retention_offer_and_is_won_back(running_suite):
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": "ada@example.com"})).json()
        last_month = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        bought = await gw.post(
            "/v1/transactions",
            json={"customer_id": ada["id"], "amount": "20", "currency": "USD", "occurred_at": last_month},
        )
        assert bought.status_code == 201, bought.text
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
        created = await gw.post(
            "/v1/playbooks",
            json={
                "name": "Retain",
                "trigger_stages": ["at_risk"],
                "holdout_share": 0,
                "template_id": template.json()["id"],
                "outreach_queue": "retention",
            },
        )
        assert created.status_code == 201, created.text
        playbook = created.json()
        assert (await gw.get(f"/v1/playbooks/{playbook['id']}")).json() == playbook
        assert [p["id"] for p in (await gw.get("/v1/playbooks")).json()["items"]] == [playbook["id"]]
        # value measures it once someone entered; until then its results are 404.
        assert (await gw.get(f"/v1/playbooks/{playbook['id']}/results")).status_code == 404

        async def new():
            body = (await gw.get(f"/v1/customers/{ada['id']}/lifecycle")).json()
            return body if body.get("stage") == "new" else None

        await wait_until(new, timeout=20, what="Ada's first purchase in lifecycle")
        at = datetime.now(UTC) + timedelta(seconds=1)
        quiet = catalog_event(
            "lifecycle",
            "crm.lifecycle.stage.changed",
            {
                "customer_id": ada["id"],
                "from_stage": "new",
                "to_stage": "at_risk",
                "at": at.isoformat(),
                "cause_event_id": "sweep:e2e",
            },
            ada["id"],
        )
        await _publish(running_suite.nats_url, quiet)

        async def entered():
            items = (await gw.get(f"/v1/playbooks/{playbook['id']}/entries")).json()["items"]
            return items or None

        [entry] = await wait_until(entered, timeout=20, what="Ada in the playbook")
        assert (entry["customer_id"], entry["group"], entry["stage"]) == (ada["id"], "treatment", "at_risk")

        async def offered():
            items = (await gw.get(f"/v1/customers/{ada['id']}/offers")).json()["items"]
            return [o for o in items if o["playbook_id"] == playbook["id"]] or None

        [offer] = await wait_until(offered, timeout=20, what="value's retention offer")
        assert offer["amount_off"] == "5"

        async def on_timeline():
            items = (await gw.get(f"/v1/customers/{ada['id']}/timeline")).json()["items"]
            return [i for i in items if i["type"] == "crm.lifecycle.playbook.entered"] or None

        [line] = await wait_until(on_timeline, timeout=20, what="the entry on Ada's timeline")
        assert line["summary"] == "Entered playbook Retain (outreach: retention)"
        view = (await gw.get(f"/v1/customers/{ada['id']}/360")).json()
        assert [e["playbook_id"] for e in view["playbooks"]] == [playbook["id"]] and view["missing"] == []

        again = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        bought = await gw.post(
            "/v1/transactions", json={"customer_id": ada["id"], "amount": "30", "currency": "USD", "occurred_at": again}
        )
        assert bought.status_code == 201, bought.text

        async def won_back():
            response = await gw.get(f"/v1/playbooks/{playbook['id']}/results")
            body = response.json()
            return body if response.status_code == 200 and body["treatment"]["converted"] == 1 else None

        results = await wait_until(won_back, timeout=20, what="the purchase in the playbook's results")
        assert results["treatment"]["customers"] == 1 and results["treatment"]["revenue"] == 30.0
        assert results["holdout"]["customers"] == 0
