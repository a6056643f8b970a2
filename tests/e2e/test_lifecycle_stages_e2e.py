"""End to end: a customer going quiet becomes at risk after a sweep, through the gateway (the
running suite, `valuechain run`): the reason in the lifecycle history and on the timeline,
the sweep in the list, the rules readable and an impossible rule refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_a_quiet_customer_is_at_risk_after_a_sweep_with_its_reason(running_suite):
    now = datetime.now(UTC)
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": "ada.quiet@example.com", "name": "Ada"})).json()
        for n, days in enumerate((310, 300), start=1):
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": ada["id"],
                    "amount": "40.00",
                    "currency": "USD",
                    "occurred_at": (now - timedelta(days=days)).isoformat(),
                    "external_id": f"quiet-{n}",
                },
            )
            assert bought.status_code == 201, bought.text
        path = f"/v1/customers/{ada['id']}/lifecycle"
        await _json_when(gw, path, lambda body: body["stage"] == "active", "Ada active")

        async def profiled():  # lifecycle has her purchase dates (its profiles consumer)
            swept = await gw.post("/v1/lifecycle/sweeps")
            assert swept.status_code == 201, swept.text
            return swept.json() if swept.json()["transitions"] else None

        sweep = await wait_until(profiled, timeout=15, interval=0.2, what="a sweep that moves Ada")
        body = (await gw.get(path)).json()
        assert body["stage"] == "at_risk"
        reason = body["history"][-1]
        assert (reason["rule"], reason["rule_version"], reason["event_id"]) == ("gone_quiet", 1, sweep["sweep_id"])
        assert reason["values"]["recency_ratio"] > 2
        assert body["churn_risk"]["band"] == "high"

        listed = (await gw.get("/v1/lifecycle/sweeps")).json()
        assert sweep["sweep_id"] in [s["sweep_id"] for s in listed["items"]]
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda t: any(item["summary"] == "Stage active → at_risk" for item in t["items"]),
            "the move on the timeline",
        )

        rules = (await gw.get("/v1/lifecycle/rules")).json()
        assert rules["version"] == 1
        refused = await gw.put(
            "/v1/lifecycle/rules",
            json={
                "rules": [
                    {"name": "x", "from": ["active"], "to": "loyal", "when": [{"field": "mood", "op": ">", "value": 1}]}
                ]
            },
        )
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.rules.0.when.0.field"
        assert (await gw.get("/v1/lifecycle/rules")).json()["version"] == 1
