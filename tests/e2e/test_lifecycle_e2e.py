"""End to end through the gateway, lifecycle's parts in the shared running suite: the cohorts,
survival and funnel; a quiet customer at risk after a sweep; a ticket missing its SLA; loyalty
points buying value's offer; a playbook's retention offer and the win-back. In this order:
the playbook comes last, so no earlier test's stage changes enter it; it is disabled at the
end, so no later test's customers do."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when
from tests.services.test_engage import catalog_event
from tests.services.test_lifecycle import _publish
from tests.support import wait_until

# --- End to end: lifecycle's retention analytics through the gateway, fed by purchases recorded


async def test_cohorts_survival_and_funnel_through_the_gateway(running_suite):
    # 1991: a year no other test's purchases fall in, so the cohorts and survival are these three.
    tag = unique("cohort")
    async with running_suite.client() as gw:
        for n, months in enumerate([("1991-01", "1991-02"), ("1991-01",), ("1991-02", "1991-04")]):
            customer = await gw.post("/v1/customers", json={"email": unique_email(f"cohort{n}-")})
            assert customer.status_code == 201, customer.text
            for month in months:
                response = await gw.post(
                    "/v1/transactions",
                    json={
                        "customer_id": customer.json()["id"],
                        "amount": "12.00",
                        "currency": "USD",
                        "occurred_at": f"{month}-15T12:00:00Z",
                        "external_id": f"{tag}-{n}-{month}",
                    },
                )
                assert response.status_code == 201, response.text

        async def matrix():
            body = (
                await gw.get("/v1/lifecycle/cohorts", params={"by": "month", "from": "1991-01", "to": "1991-12"})
            ).json()
            cells = [(c["cohort"], c["size"], [m["customers"] for m in c["months"]]) for c in body["cohorts"]]
            return cells if sum(size for _, size, _ in cells) == 3 and len(cells[-1][2]) == 3 else None

        assert await wait_until(matrix, timeout=60, what="the cohorts in lifecycle") == [
            ("1991-01", 2, [2, 1, 0, 0]),
            ("1991-02", 1, [1, 0, 1]),
        ]
        survival = await gw.get("/v1/lifecycle/survival", params={"as_of": "1991-06-01T00:00:00Z"})
        assert survival.status_code == 200, survival.text
        assert (survival.json()["customers"], survival.json()["churned"]) == (3, 0)  # nobody churned: all censored
        funnel = await gw.get("/v1/lifecycle/funnel")
        assert funnel.status_code == 200, funnel.text
        assert [s["stage"] for s in funnel.json()["stages"]][:3] == ["prospect", "new", "active"]
        bad = await gw.get("/v1/lifecycle/cohorts", params={"from": "1997-13"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.from", bad.text


# --- End to end: a customer going quiet becomes at risk after a sweep, through the gateway (the


async def test_a_quiet_customer_is_at_risk_after_a_sweep_with_its_reason(running_suite):
    now = datetime.now(UTC)
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.quiet"), "name": "Ada"})).json()
        tag = unique("quiet")
        for n, days in enumerate((310, 300), start=1):
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": ada["id"],
                    "amount": "40.00",
                    "currency": "USD",
                    "occurred_at": (now - timedelta(days=days)).isoformat(),
                    "external_id": f"{tag}-{n}",
                },
            )
            assert bought.status_code == 201, bought.text
        path = f"/v1/customers/{ada['id']}/lifecycle"
        await _json_when(gw, path, lambda body: body["stage"] == "active", "Ada active")

        async def profiled():  # lifecycle has her purchase dates (its profiles consumer)
            swept = await gw.post("/v1/lifecycle/sweeps")
            assert swept.status_code == 201, swept.text
            # The shared suite's other customers may move too: the sweep wanted is the one moving Ada.
            return swept.json() if (await gw.get(path)).json()["stage"] != "active" else None

        sweep = await wait_until(profiled, timeout=15, interval=0.2, what="a sweep that moves Ada")
        assert sweep["transitions"]
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
        assert rules["version"] >= 1
        refused = await gw.put(
            "/v1/lifecycle/rules",
            json={
                "rules": [
                    {"name": "x", "from": ["active"], "to": "loyal", "when": [{"field": "mood", "op": ">", "value": 1}]}
                ]
            },
        )
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.rules.0.when.0.field"
        assert (await gw.get("/v1/lifecycle/rules")).json()["version"] == rules["version"]


# --- End to end: a ticket through the gateway misses its SLA, is escalated, and shows on the

TARGETS = [
    {"priority": p, "first_response_minutes": 0.001, "resolution_minutes": 480}
    for p in ("low", "normal", "high", "urgent")
]


async def test_a_ticket_breaches_its_sla_and_is_escalated(running_suite):
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.ticket"), "name": "Ada"})).json()
        policy = await gw.post("/v1/sla-policies", json={"name": "Tight", "targets": TARGETS, "is_default": True})
        assert policy.status_code == 201, policy.text
        created = None
        for _ in range(200):  # lifecycle learns of the customer from identify's event
            created = await gw.post("/v1/tickets", json={"customer_id": ada["id"], "subject": "Where is my parcel?"})
            if created.status_code == 201:
                break
            await asyncio.sleep(0.05)
        assert created is not None and created.status_code == 201, created.text
        ticket = created.json()
        assert ticket["policy_id"] == policy.json()["id"]
        # First response was due 60 ms after opening: a read shows it overdue, a change records the breach.
        # (The SLA check, every VALUECHAIN_LIFECYCLE_TICKET_SLA_CHECK_S, may have recorded it already.)
        await _json_when(
            gw, f"/v1/tickets/{ticket['id']}", lambda b: b["overdue"] or b["escalated_at"], "the ticket overdue"
        )
        opened = await gw.patch(f"/v1/tickets/{ticket['id']}", json={"status": "open"})
        assert opened.status_code == 200, opened.text
        assert opened.json()["escalated_at"] and opened.json()["first_response_breached_at"]
        refused = await gw.patch(f"/v1/tickets/{ticket['id']}", json={"status": "new"})
        assert refused.status_code == 409 and refused.json()["detail"].endswith("may move to pending, solved, closed")

        history = (await gw.get(f"/v1/tickets/{ticket['id']}/history")).json()["items"]
        assert [h["field"] for h in history if h["field"] != "status"] == ["created", "sla_breached", "escalated"]
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: (
                {"crm.lifecycle.ticket.created", "crm.lifecycle.ticket.sla_breached"} <= {i["type"] for i in b["items"]}
            ),
            "the ticket and its breach on the timeline",
        )
        view = await _json_when(gw, f"/v1/customers/{ada['id']}/360", lambda b: b["tickets"], "the 360 part")
        assert view["tickets"][0]["id"] == ticket["id"]


# --- End to end through the gateway: a purchase earns loyalty points, they buy one of value's


async def test_points_earned_by_a_purchase_buy_an_offer_from_value(running_suite):
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"email": unique_email("points-e2e")})).json()
        cid = customer["id"]
        bought = await gw.post(
            "/v1/transactions",
            json={"customer_id": cid, "amount": "180", "currency": "USD", "occurred_at": "2026-11-20T10:00:00Z"},
        )
        assert bought.status_code == 201, bought.text
        # The default programme: 1 point per unit, bronze from 0.
        body = await _json_when(gw, f"/v1/customers/{cid}/loyalty", lambda b: b["balance"] == 180, "points earned")
        assert body["tier"] == "bronze" and body["items"][0]["kind"] == "earned"

        reward = await gw.post(
            "/v1/offer-templates",
            json={"kind": "percent_off", "title": "20% off", "percent_off": "20", "points_price": 150},
        )
        assert reward.status_code == 201, reward.text
        template_id = reward.json()["id"]

        async def redeemed():
            response = await gw.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"template_id": template_id})
            return response.json() if response.status_code == 201 else None

        redemption = await wait_until(redeemed, what="lifecycle knows the reward")
        assert redemption["balance"] == 30
        offers = await _json_when(
            gw,
            f"/v1/customers/{cid}/offers",
            lambda b: any(o.get("template_id") == template_id for o in b["items"]),
            "value issued the offer",
        )
        assert any(o["kind"] == "percent_off" for o in offers["items"])
        short = await gw.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"template_id": template_id})
        assert short.status_code == 409 and short.json()["error"] == "insufficient_points"

        view = await _json_when(
            gw,
            f"/v1/customers/{cid}/360",
            lambda b: (
                b["loyalty"] is not None
                and b["loyalty"]["balance"] == 30
                and any(t["type"] == "crm.lifecycle.loyalty.points_changed" for t in b["timeline"])
            ),
            "loyalty in the 360 view and on the timeline",
        )
        assert view["loyalty"]["tier"] == "bronze"
        programme = await gw.get("/v1/loyalty/programme")
        assert programme.status_code == 200 and programme.json()["version"] == 0


# --- End to end through the gateway: a retention playbook configured in lifecycle, a customer


async def test_a_customer_going_quiet_gets_the_retention_offer_and_is_won_back(running_suite, afterwards):
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada")})).json()
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
        # Disabled when the test ends: it would take in every later test's customer moving to at_risk.
        afterwards.append((f"/v1/playbooks/{playbook['id']}", {"enabled": False}))
        assert (await gw.get(f"/v1/playbooks/{playbook['id']}")).json() == playbook
        assert playbook["id"] in [p["id"] for p in (await gw.get("/v1/playbooks")).json()["items"]]
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
            return [item for item in items if item["customer_id"] == ada["id"]] or None

        [entry] = await wait_until(entered, timeout=20, what="Ada in the playbook")
        assert (entry["customer_id"], entry["group"], entry["stage"]) == (ada["id"], "treatment", "at_risk")

        async def offered():
            response = await gw.get(f"/v1/customers/{ada['id']}/offers")
            if response.status_code == 404:  # value has not heard of Ada yet
                return None
            return [o for o in response.json()["items"] if o["playbook_id"] == playbook["id"]] or None

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
