"""lifecycle's tickets against a real nats-server and database, fed by the real identify service:
statuses and history, SLA breaches that escalate, comments that cost and reach engage, outreach."""

from __future__ import annotations

from datetime import UTC, datetime

from services.lifecycle.tickets.models import Ticket
from shared.db.uow import transaction
from tests.services.test_engage import catalog_event, create_customer, publish, start
from tests.services.test_engage_conversations import _stakeholder
from tests.services.test_lifecycle import _handled, _read_stream, _stage
from tests.support import wait_until

TARGETS = [
    {"priority": p, "first_response_minutes": 60, "resolution_minutes": 480} for p in ("low", "normal", "high")
] + [{"priority": "urgent", "first_response_minutes": 15, "resolution_minutes": 120}]


async def _setup(suite, **overrides):
    identify = await start(suite, "identify")
    lifecycle = await suite.start("lifecycle", **overrides)
    customer = await create_customer(identify, email="ann@example.com")
    await wait_until(lambda: _stage(lifecycle.client, customer["id"], "prospect"), what="lifecycle knows the customer")
    return identify, lifecycle, customer["id"]


async def _policy(client, targets=TARGETS, **body) -> dict:
    response = await client.post("/v1/sla-policies", json={"name": "Standard", "targets": targets, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_ticket_moves_through_its_statuses_and_keeps_its_history(suite):
    _, lifecycle, customer_id = await _setup(suite)
    client = lifecycle.client
    await _stakeholder(suite, lifecycle, "emp-1", "employee")
    await _stakeholder(suite, lifecycle, "partner-1", "partner")
    policy = await _policy(client, is_default=True)

    created = await client.post(
        "/v1/tickets",
        json={"customer_id": customer_id, "subject": "Parcel arrived broken", "channel": "phone", "priority": "high"},
        headers={"x-valuechain-actor": "key:frontline"},
    )
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["status"] == "new" and ticket["policy_id"] == policy["id"]
    opened = datetime.fromisoformat(ticket["created_at"])
    assert (datetime.fromisoformat(ticket["first_response_due_at"]) - opened).total_seconds() == 3600
    assert (datetime.fromisoformat(ticket["resolution_due_at"]) - opened).total_seconds() == 480 * 60
    tid = ticket["id"]

    for status in ("open", "pending", "open", "solved", "open", "solved", "closed"):
        moved = await client.patch(f"/v1/tickets/{tid}", json={"status": status})
        assert moved.status_code == 200, (status, moved.text)
        assert moved.json()["status"] == status
    pending_due = (await client.get(f"/v1/tickets/{tid}")).json()
    assert pending_due["resolution_due_at"] is None and pending_due["closed_at"] is not None

    refused = await client.patch(f"/v1/tickets/{tid}", json={"status": "open"})
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "error": "invalid_transition",
        "detail": "a closed ticket cannot move to open; it moves nowhere: open a new ticket",
    }
    comment_on_closed = await client.post(f"/v1/tickets/{tid}/comments", json={"body": "hello"})
    assert comment_on_closed.status_code == 409

    second = (
        await client.post("/v1/tickets", json={"customer_id": customer_id, "subject": "Invoice", "priority": "low"})
    ).json()
    skipped = await client.patch(f"/v1/tickets/{second['id']}", json={"status": "open", "assignee_id": "partner-1"})
    assert skipped.status_code == 422 and "body.assignee_id" in skipped.text
    assert (await client.get(f"/v1/tickets/{second['id']}")).json()["status"] == "new"  # nothing half-written
    assigned = await client.patch(f"/v1/tickets/{second['id']}", json={"assignee_id": "emp-1", "queue": "billing"})
    assert assigned.json()["assignee_id"] == "emp-1"
    bad_move = await client.patch(f"/v1/tickets/{second['id']}", json={"status": "new"})
    assert bad_move.status_code == 200  # staying put changes nothing
    await client.patch(f"/v1/tickets/{second['id']}", json={"status": "solved"})
    back = await client.patch(f"/v1/tickets/{second['id']}", json={"status": "pending"})
    assert back.status_code == 409
    assert back.json()["detail"] == "a solved ticket cannot move to pending; it may move to open, closed"

    history = (await client.get(f"/v1/tickets/{tid}/history")).json()["items"]
    assert [(h["field"], h["from_value"], h["to_value"]) for h in history][:3] == [
        ("created", None, "new"),
        ("status", "new", "open"),
        ("status", "open", "pending"),
    ]
    assert history[0]["actor"] == "key:frontline"
    page = await client.get(f"/v1/tickets/{tid}/history", params={"limit": 3})
    rest = await client.get(f"/v1/tickets/{tid}/history", params={"cursor": page.json()["next_cursor"]})
    assert [h["seq"] for h in page.json()["items"] + rest.json()["items"]] == [h["seq"] for h in history]

    mine = (await client.get(f"/v1/customers/{customer_id}/tickets", params={"limit": 1})).json()
    assert [t["id"] for t in mine["items"]] == [tid] and mine["next_cursor"]
    queue = (await client.get("/v1/tickets", params={"queue": "billing"})).json()["items"]
    assert [t["id"] for t in queue] == [second["id"]]
    assert (await client.get("/v1/customers/nobody/tickets")).status_code == 404

    solved = await _read_stream(suite.nats.url, "crm.lifecycle.ticket.solved", 3, settle=True)
    assert {e["data"]["ticket_id"] for e in solved} == {tid, second["id"]}
    assert solved[0]["data"]["channel"] == "phone" and solved[0]["subject"] == customer_id
    await _read_stream(suite.nats.url, "crm.lifecycle.ticket.created", 2, settle=True)
    await _read_stream(suite.nats.url, "crm.lifecycle.ticket.status_changed", 8, settle=True)


async def test_bad_tickets_and_policies_are_refused_and_write_nothing(suite):
    _, lifecycle, customer_id = await _setup(suite)
    client = lifecycle.client
    unknown = await client.post("/v1/tickets", json={"customer_id": "nobody", "subject": "x"})
    assert unknown.status_code == 422 and "body.customer_id" in unknown.text
    no_policy = await client.post(
        "/v1/tickets", json={"customer_id": customer_id, "subject": "x", "sla_policy_id": "p"}
    )
    assert no_policy.status_code == 422 and "body.sla_policy_id" in no_policy.text
    negative = [dict(TARGETS[0], first_response_minutes=-5), *TARGETS[1:]]
    response = await client.post("/v1/sla-policies", json={"name": "Bad", "targets": negative})
    assert response.status_code == 422 and "first_response_minutes" in response.text
    missing = [{"priority": "low", "resolution_minutes": 60}, *TARGETS[1:]]
    response = await client.post("/v1/sla-policies", json={"name": "Bad", "targets": missing})
    assert response.status_code == 422 and "first_response_minutes" in response.text
    response = await client.post("/v1/sla-policies", json={"name": "Bad", "targets": TARGETS[1:]})
    assert response.status_code == 422 and "priority low" in response.text
    bad_calendar = await client.post(
        "/v1/business-calendars", json={"name": "x", "time_zone": "Mars/Olympus", "holiday_country": "DE"}
    )
    assert bad_calendar.status_code == 422 and "time_zone" in bad_calendar.text
    assert (await client.get("/v1/sla-policies")).json()["items"] == []
    assert (await client.get("/v1/tickets")).json()["items"] == []
    calendar = await client.post(
        "/v1/business-calendars",
        json={"name": "Berlin", "time_zone": "Europe/Berlin", "holiday_country": "DE", "holiday_subdivision": "BE"},
    )
    assert calendar.status_code == 201, calendar.text
    assert calendar.json()["start_time"] == "09:00" and calendar.json()["working_days"] == [0, 1, 2, 3, 4]
    policy = await _policy(client, calendar_id=calendar.json()["id"])
    assert (await client.get(f"/v1/sla-policies/{policy['id']}")).json()["calendar_id"] == calendar.json()["id"]


async def test_a_policy_is_replaced_for_new_tickets_and_open_ones_keep_their_targets(suite):
    _, lifecycle, customer_id = await _setup(suite)
    client = lifecycle.client
    policy = await _policy(client, is_default=True)
    before = (await client.post("/v1/tickets", json={"customer_id": customer_id, "subject": "Before"})).json()

    faster = [dict(t, first_response_minutes=30) for t in TARGETS]
    replaced = await client.put(f"/v1/sla-policies/{policy['id']}", json={"name": "Faster", "targets": faster})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "Faster" and replaced.json()["is_default"] is False
    assert {t["first_response_minutes"] for t in replaced.json()["targets"]} == {30}
    # No default any more (is_default false replaced true): make it the default again.
    again = await client.put(
        f"/v1/sla-policies/{policy['id']}", json={"name": "Faster", "targets": faster, "is_default": True}
    )
    assert again.status_code == 200 and again.json()["is_default"] is True

    after = (await client.post("/v1/tickets", json={"customer_id": customer_id, "subject": "After"})).json()
    for ticket, minutes in ((before, 60), (after, 30)):
        body = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        opened = datetime.fromisoformat(body["created_at"])
        assert (datetime.fromisoformat(body["first_response_due_at"]) - opened).total_seconds() == minutes * 60

    # Refused as at creation, and nothing changes.
    bad = await client.put(f"/v1/sla-policies/{policy['id']}", json={"name": "Bad", "targets": TARGETS[1:]})
    assert bad.status_code == 422 and "priority low" in bad.text
    no_calendar = await client.put(
        f"/v1/sla-policies/{policy['id']}", json={"name": "Bad", "targets": TARGETS, "calendar_id": "nope"}
    )
    assert no_calendar.status_code == 422 and "body.calendar_id" in no_calendar.text
    unknown = await client.put("/v1/sla-policies/nope", json={"name": "X", "targets": TARGETS})
    assert unknown.status_code == 404
    assert (await client.get(f"/v1/sla-policies/{policy['id']}")).json()["name"] == "Faster"


async def test_a_breached_sla_escalates_the_ticket(suite):
    _, lifecycle, customer_id = await _setup(suite, ticket_sla_check_s=0.2)
    client = lifecycle.client
    tight = [dict(t, first_response_minutes=0.001) for t in TARGETS]  # due 60 ms after opening
    policy = await _policy(client, targets=tight)
    ticket = (
        await client.post(
            "/v1/tickets", json={"customer_id": customer_id, "subject": "Late", "sla_policy_id": policy["id"]}
        )
    ).json()

    async def escalated():
        body = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        return body if body["escalated_at"] else None

    body = await wait_until(escalated, what="the SLA check to escalate the ticket")
    assert body["first_response_breached_at"] == body["first_response_due_at"]
    assert body["resolution_breached_at"] is None
    breached = await _read_stream(suite.nats.url, "crm.lifecycle.ticket.sla_breached", 1, settle=True)
    assert breached[0]["data"]["target"] == "first_response" and breached[0]["data"]["policy_id"] == policy["id"]
    escalation = await _read_stream(suite.nats.url, "crm.lifecycle.ticket.escalated", 1, settle=True)
    assert escalation[0]["data"]["reason"] == "sla_breached:first_response"
    history = (await client.get(f"/v1/tickets/{ticket['id']}/history")).json()["items"]
    assert [h["field"] for h in history][-2:] == ["sla_breached", "escalated"] and history[-1]["actor"] == "system"


async def test_comments_cost_to_serve_and_email_replies_go_to_engage(suite):
    _, lifecycle, customer_id = await _setup(suite)
    client = lifecycle.client
    await _stakeholder(suite, lifecycle, "emp-1", "employee")
    ticket = (
        await client.post("/v1/tickets", json={"customer_id": customer_id, "subject": "Refund?", "channel": "email"})
    ).json()
    note = await client.post(
        f"/v1/tickets/{ticket['id']}/comments", json={"body": "checked the order", "public": False, "minutes": 30}
    )
    assert note.status_code == 201, note.text
    assert note.json()["reply_request_id"] is None
    reply = await client.post(
        f"/v1/tickets/{ticket['id']}/comments",
        json={"body": "Your refund is on its way.", "author_id": "emp-1", "minutes": 6},
    )
    assert reply.status_code == 201 and reply.json()["reply_request_id"]
    shown = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
    assert shown["handling_minutes"] == 36 and shown["first_response_at"] == reply.json()["created_at"]
    comments = (await client.get(f"/v1/tickets/{ticket['id']}/comments")).json()["items"]
    assert [c["public"] for c in comments] == [False, True]

    costs = await _read_stream(suite.nats.url, "crm.lifecycle.service_cost.recorded", 2, settle=True)
    # 30 and 6 minutes at the default 30 an hour.
    assert [(c["data"]["reporting_amount"], c["data"]["reporting_currency"]) for c in costs] == [
        ("15.00", "USD"),
        ("3.00", "USD"),
    ]
    assert costs[0]["data"]["ticket_id"] == ticket["id"]
    replies = await _read_stream(suite.nats.url, "crm.lifecycle.reply.requested", 1, settle=True)
    assert replies[0]["data"]["request_id"] == reply.json()["reply_request_id"]
    assert replies[0]["data"]["body"] == "Your refund is on its way." and replies[0]["data"]["subject"] == "Refund?"


async def test_a_playbook_asks_for_an_outreach_ticket(suite):
    _, lifecycle, customer_id = await _setup(suite)
    await _stakeholder(suite, lifecycle, "am-1", "employee")
    for group, outreach, assignee in (("treatment", True, "am-1"), ("holdout", True, None), ("treatment", False, None)):
        event = catalog_event(
            "lifecycle",
            "crm.lifecycle.playbook.entered",
            {
                "playbook_id": "pb-1",
                "customer_id": customer_id,
                "group": group,
                "entered_at": datetime.now(UTC).isoformat(),
                "outreach": outreach,
                "outreach_queue": "retention",
                "outreach_assignee_id": assignee,
                "stage": "at_risk",
            },
            customer_id,
        )
        await publish(suite.nats.url, event, event.id)
        await wait_until(lambda event=event: _handled(lifecycle, event), what="the playbook event handled")
    tickets = (await lifecycle.client.get(f"/v1/customers/{customer_id}/tickets")).json()["items"]
    assert len(tickets) == 1, tickets
    assert tickets[0]["queue"] == "retention" and tickets[0]["assignee_id"] == "am-1"
    assert tickets[0]["playbook_id"] == "pb-1" and tickets[0]["subject"] == "Retention outreach (at_risk)"


async def test_the_sla_check_records_breaches_in_one_pass(suite):
    _, lifecycle, customer_id = await _setup(suite)
    policy = await _policy(lifecycle.client)
    ticket = (
        await lifecycle.client.post(
            "/v1/tickets", json={"customer_id": customer_id, "subject": "x", "sla_policy_id": policy["id"]}
        )
    ).json()
    from services.lifecycle.tickets.service import check_overdue

    later = datetime.fromisoformat(ticket["resolution_due_at"])
    async with transaction(lifecycle.runtime.db.writer) as session:
        assert await check_overdue(session, now=later) == 1
    async with lifecycle.runtime.db.reader() as session:
        row = await session.get(Ticket, ticket["id"])
        assert row.first_response_breached_at is not None and row.resolution_breached_at == later
        assert row.next_due_at is None


async def test_export_shows_tickets_and_erasure_removes_their_free_text(suite):
    identify, lifecycle, customer_id = await _setup(suite)
    client = lifecycle.client
    ticket = (await client.post("/v1/tickets", json={"customer_id": customer_id, "subject": "Ann's parcel"})).json()
    await client.patch(f"/v1/tickets/{ticket['id']}", json={"subject": "Ann's broken parcel"})
    await client.post(f"/v1/tickets/{ticket['id']}/comments", json={"body": "Ann called, upset", "public": False})
    path = f"/internal/customers/{customer_id}/personal-data"
    tables = {t["table"]: t for t in (await client.get(path)).json()["tables"]}
    assert tables["tickets"]["rows"][0]["subject"] == "Ann's broken parcel"
    assert tables["ticket_comments"]["rows"][0]["body"] == "Ann called, upset"
    assert {r["to_value"] for r in tables["ticket_history"]["rows"]} >= {"Ann's broken parcel"}

    assert (await identify.client.post(f"/v1/customers/{customer_id}/erasure")).status_code == 202

    async def erased():
        row = (await client.get(f"/v1/tickets/{ticket['id']}")).json()
        return row if row["subject"] is None else None

    await wait_until(erased, what="lifecycle to erase the ticket's subject")
    tables = {t["table"]: t for t in (await client.get(path)).json()["tables"]}
    assert tables.get("ticket_comments", {"rows": []})["rows"] == []
    history = tables["ticket_history"]["rows"]
    assert all(r["from_value"] is None and r["to_value"] is None for r in history)
