"""End to end: a ticket through the gateway misses its SLA, is escalated, and shows on the
customer's timeline and in the 360 view (the running suite)."""

from __future__ import annotations

import asyncio

from tests.e2e.test_value_chain import _json_when

TARGETS = [
    {"priority": p, "first_response_minutes": 0.001, "resolution_minutes": 480}
    for p in ("low", "normal", "high", "urgent")
]


async def test_a_ticket_breaches_its_sla_and_is_escalated(running_suite):
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": "ada@example.com", "name": "Ada"})).json()
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
