"""End to end: a survey through the gateway. A first purchase triggers it, staff send another
on demand, the customer answers through the public link with no key, and the answer reaches
the NPS report, the timeline and the 360 view (the running suite, `valuechain run`)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_a_survey_is_answered_through_its_link_and_reaches_the_report_and_the_360(running_suite, afterwards):
    # The report is read from the test's start on: the shared suite may hold earlier answers.
    started = datetime.now(UTC).isoformat()
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.fb"), "name": "Ada"})).json()
        bob = (await gw.post("/v1/customers", json={"email": unique_email("bob.fb"), "name": "Bob"})).json()
        questions = [
            {"id": "nps", "type": "nps", "text": "How likely are you to recommend us?", "required": True},
            {"id": "why", "type": "text", "text": "Why?"},
        ]
        after_purchase = await gw.post(
            "/v1/surveys",
            json={"name": "First purchase", "questions": questions, "triggers": ["crm.identify.transaction.recorded"]},
        )
        on_demand = await gw.post("/v1/surveys", json={"name": "How are we doing?", "questions": questions})
        assert after_purchase.status_code == 201 and on_demand.status_code == 201, after_purchase.text
        # Paused when the test ends: its trigger would send every later test's buyers a survey.
        afterwards.append((f"/v1/surveys/{after_purchase.json()['id']}", {"active": False}))

        async def sent():
            response = await gw.post(f"/v1/surveys/{on_demand.json()['id']}/send", json={"customer_id": ada["id"]})
            return response if response.status_code != 422 else None  # until engage knows Ada

        invitation = await wait_until(sent, timeout=15, interval=0.05, what="the survey sent to Ada")
        assert invitation.status_code == 201, invitation.text
        path = "/v1/feedback/" + invitation.json()["link"].rsplit("/v1/feedback/", 1)[1]

        # Bob's first purchase sends him the first-purchase survey: staff cannot send another yet.
        await _json_when(gw, f"/v1/customers/{bob['id']}/feedback", lambda b: b["items"] == [], "engage knows Bob")
        bought = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": bob["id"],
                "amount": "12.00",
                "currency": "USD",
                "occurred_at": "2026-12-05T09:00:00Z",
            },
        )
        assert bought.status_code == 201, bought.text

        async def quiet():
            response = await gw.post(f"/v1/surveys/{on_demand.json()['id']}/send", json={"customer_id": bob["id"]})
            return response.status_code == 409 and response.json()["error"] == "quiet_period"

        await wait_until(quiet, timeout=15, interval=0.1, what="the rule's invitation to Bob")

    # The customer has no key: the signed link is enough, and answers once.
    async with httpx.AsyncClient(base_url=running_suite.gateway_url, timeout=10) as customer:
        form = await customer.get(path)
        assert form.status_code == 200 and form.json()["name"] == "How are we doing?", form.text
        answered = await customer.post(path, json={"answers": {"nps": 10, "why": "Friendly people"}})
        assert answered.status_code == 201, answered.text
        again = await customer.post(path, json={"answers": {"nps": 0}})
        assert again.status_code == 409 and again.json()["error"] == "already_answered"
        tampered = await customer.post(path[:-3] + "abc", json={"answers": {"nps": 0}})
        assert tampered.status_code == 400 and tampered.json()["error"] == "bad_token"
        assert (await customer.get("/v1/feedback/report", params={"metric": "nps"})).status_code == 401

    async with running_suite.client() as gw:
        report = (
            await gw.get("/v1/feedback/report", params={"metric": "nps", "by": "channel", "from": started})
        ).json()
        assert [(c["key"], c["score"], c["responses"]) for c in report["cells"]] == [(None, 100.0, 1)]
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: "crm.engage.feedback.received" in {i["type"] for i in b["items"]},
            "the answer on Ada's timeline",
        )
        view = (await gw.get(f"/v1/customers/{ada['id']}/360")).json()
        assert [r["nps"] for r in view["feedback"]] == [10] and view["missing"] == []
        assert view["feedback"][0]["texts"] == {"why": "Friendly people"}
