"""lifecycle, engage, network and value follow identify's merges (real identify, real nats-server).

Each follower's `<service>-merges` consumer moves what it holds about the merged
customers to the survivor; events about a merged id that a follower reads after
the merge land on the survivor (crafted events on the real bus, as
tests/services/test_lifecycle.py does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from shared.events.envelope import make_event
from tests.services.test_engage import catalog_event, create_customer, publish, start
from tests.services.test_lifecycle import _handled, _read_stream
from tests.services.test_lifecycle_analytics import _buy, _matrix_when
from tests.services.test_lifecycle_playbooks import _profiled, _stage
from tests.services.test_value_campaigns import _consent, _publish_all, _scored, _template
from tests.services.test_value_campaigns import _purchase as _purchase_event
from tests.support import wait_until


async def _json_when(client, path: str, predicate, what: str):
    async def check():
        response = await client.get(path)
        return response.json() if response.status_code == 200 and predicate(response.json()) else None

    return await wait_until(check, what=what)


async def _purchase(identify, customer_id: str, n: int) -> None:
    response = await identify.client.post(
        "/v1/transactions",
        json={
            "customer_id": customer_id,
            "amount": "10.00",
            "currency": "USD",
            "occurred_at": f"2026-01-{n:02d}T10:00:00Z",
            "external_id": f"{customer_id}-{n}",
        },
    )
    assert response.status_code == 201, response.text


async def _merge(identify, survivor_id: str, merged_ids: list[str], nats_url: str, merges_before: int = 0) -> dict:
    """Merge through identify's API; the merge event as it went out on the bus."""

    response = await identify.client.post(f"/v1/customers/{survivor_id}/merge", json={"merge": merged_ids})
    assert response.status_code == 200, response.text
    return (await _read_stream(nats_url, "crm.identify.customer.merged", merges_before + 1))[-1]


async def _merged_away(client, path: str, survivor_id: str) -> None:
    response = await client.get(path)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "customer_merged" and survivor_id in response.json()["detail"]


# --- lifecycle -------------------------------------------------------------------------------


async def test_lifecycle_gives_the_survivor_the_furthest_stage_and_every_transition(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    other = await create_customer(identify, email="o@example.com")
    await _purchase(identify, survivor["id"], 1)
    await _purchase(identify, merged["id"], 2)
    for customer in (survivor, merged):
        await _json_when(
            lifecycle.client,
            f"/v1/customers/{customer['id']}/lifecycle",
            lambda body: body["stage"] == "new",
            "stage new",
        )
    await _json_when(
        lifecycle.client, f"/v1/customers/{other['id']}/lifecycle", lambda body: body["stage"] == "prospect", "prospect"
    )

    event = await _merge(identify, survivor["id"], [merged["id"], other["id"]], suite.nats.url)
    # Two purchases between them make the survivor active (further than either's `new`).
    body = await _json_when(
        lifecycle.client,
        f"/v1/customers/{survivor['id']}/lifecycle",
        lambda body: body["stage"] == "active",
        "survivor active",
    )
    assert body["purchase_count"] == 2
    assert [(h["from"], h["to"]) for h in body["history"]] == [
        (None, "prospect"),
        (None, "prospect"),
        (None, "prospect"),
        ("prospect", "new"),
        ("prospect", "new"),
        ("new", "active"),
    ]
    ats = [h["at"] for h in body["history"]]
    assert ats == sorted(ats) and body["history"][-1]["event_id"] == event["id"]
    for gone in (merged, other):
        await _merged_away(lifecycle.client, f"/v1/customers/{gone['id']}/lifecycle", survivor["id"])

    changes = await _read_stream(suite.nats.url, "crm.lifecycle.stage.changed", 6)
    merge_change = [c for c in changes if c["data"]["cause_event_id"] == event["id"]]
    assert [(c["subject"], c["data"]["from_stage"], c["data"]["to_stage"]) for c in merge_change] == [
        (survivor["id"], "new", "active")
    ]


async def test_lifecycle_moves_tickets_comments_and_history_to_the_survivor(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    await _json_when(
        lifecycle.client, f"/v1/customers/{merged['id']}/lifecycle", lambda b: b["stage"] == "prospect", "prospect"
    )
    ticket = await lifecycle.client.post("/v1/tickets", json={"customer_id": merged["id"], "subject": "Broken"})
    assert ticket.status_code == 201, ticket.text
    tid = ticket.json()["id"]
    note = await lifecycle.client.post(f"/v1/tickets/{tid}/comments", json={"body": "called", "public": False})
    assert note.status_code == 201, note.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    moved = await _json_when(
        lifecycle.client,
        f"/v1/customers/{survivor['id']}/tickets",
        lambda b: len(b["items"]) == 1,
        "the ticket on the survivor",
    )
    assert moved["items"][0]["id"] == tid
    comments = (await lifecycle.client.get(f"/v1/tickets/{tid}/comments")).json()["items"]
    assert [c["customer_id"] for c in comments] == [survivor["id"]]
    await _merged_away(lifecycle.client, f"/v1/customers/{merged['id']}/tickets", survivor["id"])
    refused = await lifecycle.client.post("/v1/tickets", json={"customer_id": merged["id"], "subject": "Again"})
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


async def test_lifecycle_applies_events_read_after_the_merge_to_the_survivor_and_ignores_a_replay(suite):
    lifecycle = await start(suite, "lifecycle")
    created = catalog_event(
        "identify",
        "crm.identify.customer.created",
        {"id": "s-1", "email": "s@example.com", "created_at": "2026-01-01T00:00:00Z"},
        "s-1",
    )
    merge = catalog_event(
        "identify",
        "crm.identify.customer.merged",
        {"survivor_id": "s-1", "merged_ids": ["m-1"], "merged_at": "2026-01-02T00:00:00Z", "purchase_count": 0},
        "s-1",
    )
    for event in (created, merge):
        await publish(suite.nats.url, event, event.id)
        await wait_until(lambda e=event: _handled(lifecycle, e), what=f"{event.type} applied")
    before = (await lifecycle.client.get("/v1/customers/s-1/lifecycle")).json()
    assert before["stage"] == "prospect" and len(before["history"]) == 1

    # The merged customer's first purchase, recorded before the merge, read after it.
    late = make_event(
        service="identify",
        type="crm.identify.transaction.recorded",
        data={
            "id": "t-1",
            "customer_id": "m-1",
            "amount": "5",
            "currency": "EUR",
            "occurred_at": "2026-01-01T12:00:00Z",
            "purchase_count": 1,
        },
        subject="m-1",
    )
    await publish(suite.nats.url, late, late.id)
    after = await _json_when(
        lifecycle.client,
        "/v1/customers/s-1/lifecycle",
        lambda body: body["stage"] == "new",
        "late purchase on the survivor",
    )
    assert after["history"][-1]["event_id"] == late.id
    await _merged_away(lifecycle.client, "/v1/customers/m-1/lifecycle", "s-1")

    # The same merge delivered again (past JetStream's duplicate window) changes nothing.
    await publish(suite.nats.url, merge, f"{merge.id}-replayed")
    marker = make_event(
        service="identify",
        type="crm.identify.customer.merged",
        data={"survivor_id": "s-2", "merged_ids": ["m-2"], "merged_at": "2026-01-03T00:00:00Z"},
        subject="s-2",
    )
    await publish(suite.nats.url, marker, marker.id)  # read after the replay by the same consumer
    await wait_until(lambda: _handled(lifecycle, marker), what="the marker merge applied")
    assert (await lifecycle.client.get("/v1/customers/s-1/lifecycle")).json() == after


async def test_lifecycle_gives_the_survivor_the_loyalty_ledgers_and_balances(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    survivor = await create_customer(identify, email="ls@example.com")
    merged = await create_customer(identify, email="lm@example.com")
    await _purchase(identify, survivor["id"], 1)
    await _purchase(identify, merged["id"], 2)
    for customer in (survivor, merged):
        await _json_when(
            lifecycle.client,
            f"/v1/customers/{customer['id']}/loyalty",
            lambda body: body["balance"] == 10,
            "points earned",
        )

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    body = await _json_when(
        lifecycle.client,
        f"/v1/customers/{survivor['id']}/loyalty",
        lambda body: body["balance"] == 20 and len(body["items"]) == 2,
        "the survivor's combined ledger",
    )
    assert {(e["kind"], e["points"]) for e in body["items"]} == {("earned", 10)}
    await _merged_away(lifecycle.client, f"/v1/customers/{merged['id']}/loyalty", survivor["id"])
    redeem = await lifecycle.client.post(f"/v1/customers/{merged['id']}/loyalty/redemptions", json={"template_id": "t"})
    assert redeem.status_code == 409 and redeem.json()["error"] == "customer_merged"


async def test_lifecycle_folds_purchase_months_into_the_survivor_and_its_earliest_cohort(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    await _buy(identify, survivor["id"], "2026-02-10T10:00:00Z")
    await _buy(identify, survivor["id"], "2026-03-10T10:00:00Z")
    january = await _buy(identify, merged["id"], "2026-01-10T10:00:00Z")
    await _buy(identify, merged["id"], "2026-03-20T10:00:00Z")
    jan, feb, mar = "2026-01", "2026-02", "2026-03"
    await _matrix_when(lifecycle.client, [(jan, 1, [(jan, 1), (feb, 0), (mar, 1)]), (feb, 1, [(feb, 1), (mar, 1)])])

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    # One customer now, in the merged customer's earlier cohort, buying in each month.
    await _matrix_when(lifecycle.client, [(jan, 1, [(jan, 1), (feb, 1), (mar, 1)])])
    export = (await lifecycle.client.get(f"/internal/customers/{survivor['id']}/personal-data")).json()
    (months,) = [t for t in export["tables"] if t["table"] == "purchase_months"]
    assert sorted((r["customer_id"], r["month"] % 12 + 1, r["purchases"]) for r in months["rows"]) == [
        (survivor["id"], 1, 1),
        (survivor["id"], 2, 1),
        (survivor["id"], 3, 2),
    ]

    # Voiding the merged customer's January purchase afterwards reaches the survivor, whose
    # cohort becomes February.
    response = await identify.client.post(f"/v1/transactions/{january['id']}/void", json={"reason": "duplicate"})
    assert response.status_code == 200, response.text
    await _matrix_when(lifecycle.client, [(feb, 1, [(feb, 1), (mar, 1)])])


async def test_lifecycle_moves_playbook_entries_to_the_survivor(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    s, m = survivor["id"], merged["id"]
    await _publish_all(suite.nats.url, [_scored(s, "at_risk"), _scored(m, "at_risk")])
    for who, n in ((s, 1), (m, 2)):
        await _purchase(identify, who, n)
    await _profiled(lifecycle, [s, m])
    body = {
        "name": "Retain",
        "trigger_stages": ["at_risk"],
        "holdout_share": 0,
        "template_id": "t",
        "lookback_days": 3650,
    }
    playbook = (await lifecycle.client.post("/v1/playbooks", json=body)).json()
    at = datetime.now(UTC) + timedelta(seconds=1)
    await _publish_all(suite.nats.url, [_stage(m, "active", "at_risk", at)])
    path = f"/v1/playbooks/{playbook['id']}/entries"
    await _json_when(lifecycle.client, path, lambda b: [e["customer_id"] for e in b["items"]] == [m], "m entered")

    await _merge(identify, s, [m], suite.nats.url)
    await _json_when(lifecycle.client, path, lambda b: [e["customer_id"] for e in b["items"]] == [s], "moved")
    mine = (await lifecycle.client.get(f"/v1/customers/{s}/playbooks")).json()["items"]
    assert [(e["playbook_id"], e["customer_id"]) for e in mine] == [(playbook["id"], s)]
    await _merged_away(lifecycle.client, f"/v1/customers/{m}/playbooks", s)
    # The survivor's export lists the entry (the table is tied to customers).
    export = (await lifecycle.client.get(f"/internal/customers/{s}/personal-data")).json()
    [entries] = [t for t in export["tables"] if t["table"] == "playbook_entries"]
    assert [(r["customer_id"], r["group"]) for r in entries["rows"]] == [(s, "treatment")]


async def test_lifecycle_moves_the_merged_customers_feedback_and_escalations_to_the_survivor(suite):
    """The stage rules' signals follow the merge: a detractor answer and an escalation of the
    merged customer move the survivor at the next sweep."""

    lifecycle = await start(suite, "lifecycle")
    now = datetime.now(UTC)
    events = []
    for cid in ("s-3", "m-3"):
        events.append(catalog_event("identify", "crm.identify.customer.created", {"id": cid, "created_at": now}, cid))
        for n, days in enumerate((12, 2), start=1):
            data = {
                "id": f"t-{cid}-{n}",
                "customer_id": cid,
                "amount": "5",
                "currency": "EUR",
                "occurred_at": now - timedelta(days=days),
                "purchase_count": n,
            }
            events.append(catalog_event("identify", "crm.identify.transaction.recorded", data, cid))
    for event in events:
        await publish(suite.nats.url, event, event.id)
        await wait_until(lambda e=event: _handled(lifecycle, e), what=f"{event.type} applied")
    now = datetime.now(UTC)  # after the survivor entered its stage: the answer counts in it
    signals = [
        catalog_event(
            "engage",
            "crm.engage.feedback.received",
            {"response_id": "r-1", "survey_id": "s", "customer_id": "m-3", "nps": 2, "received_at": now},
            "m-3",
        ),
        catalog_event(
            "lifecycle",
            "crm.lifecycle.ticket.escalated",
            {"ticket_id": "k-1", "customer_id": "m-3", "reason": "sla", "escalated_at": now},
            "m-3",
        ),
        catalog_event(
            "identify",
            "crm.identify.customer.merged",
            {"survivor_id": "s-3", "merged_ids": ["m-3"], "merged_at": now, "purchase_count": 4},
            "s-3",
        ),
    ]
    for event in signals:
        await publish(suite.nats.url, event, event.id)
        await wait_until(lambda e=event: _handled(lifecycle, e), what=f"{event.type} applied")

    sweep = await lifecycle.client.post("/v1/lifecycle/sweeps")
    assert sweep.status_code == 201, sweep.text
    survivor = (await lifecycle.client.get("/v1/customers/s-3/lifecycle")).json()
    assert survivor["stage"] == "at_risk" and survivor["history"][-1]["rule"] == "detractor"
    drivers = {d["driver"] for d in survivor["churn_risk"]["drivers"]}
    assert {"detractor", "escalation"} <= drivers
    await _merged_away(lifecycle.client, "/v1/customers/m-3/lifecycle", "s-3")


# --- engage ----------------------------------------------------------------------------------


async def test_engage_moves_interactions_and_timeline_and_records_the_merge(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    survivor = await create_customer(identify, email="s@example.com", name="Sam")
    merged = await create_customer(identify, email="m@example.com", name="Sam Twin")
    await _json_when(
        engage.client, f"/v1/customers/{merged['id']}/timeline", lambda b: len(b["items"]) == 1, "merged customer known"
    )
    logged = await engage.client.post(
        "/v1/interactions",
        json={
            "customer_id": merged["id"],
            "channel": "phone",
            "direction": "inbound",
            "summary": "Called about an order",
        },
    )
    assert logged.status_code == 201, logged.text
    await _purchase(identify, merged["id"], 3)
    await _json_when(
        engage.client,
        f"/v1/customers/{merged['id']}/timeline",
        lambda b: len(b["items"]) == 3,
        "merged customer's timeline",
    )

    event = await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    timeline = await _json_when(
        engage.client,
        f"/v1/customers/{survivor['id']}/timeline",
        lambda b: "crm.identify.customer.merged" in {i["type"] for i in b["items"]},
        "the merge on the timeline",
    )
    assert sorted(i["type"] for i in timeline["items"]) == [
        "crm.engage.interaction.logged",
        "crm.identify.customer.created",
        "crm.identify.customer.created",
        "crm.identify.customer.merged",
        "crm.identify.transaction.recorded",
    ]
    entry = next(i for i in timeline["items"] if i["type"] == "crm.identify.customer.merged")
    assert entry["summary"] == f"Merged customer {merged['id']} into this one" and entry["event_id"] == event["id"]
    assert {i["summary"] for i in timeline["items"] if i["type"] == "crm.identify.customer.created"} == {
        "Customer created: Sam Twin",
        "Customer created: Sam",
    }
    interactions = (await engage.client.get("/v1/interactions", params={"customer_id": survivor["id"]})).json()
    assert [i["id"] for i in interactions["items"]] == [logged.json()["id"]]

    await _merged_away(engage.client, f"/v1/customers/{merged['id']}/timeline", survivor["id"])
    refused = await engage.client.post(
        "/v1/interactions",
        json={"customer_id": merged["id"], "channel": "email", "direction": "outbound", "summary": "Hello"},
    )
    assert refused.status_code == 409 and survivor["id"] in refused.json()["detail"]
    mail = await engage.client.post(
        "/v1/emails", json={"customer_id": merged["id"], "purpose": "service", "subject": "Hi", "body": "Hi"}
    )
    assert mail.status_code == 409 and mail.json()["error"] == "customer_merged", mail.text

    # An event about the merged customer read after the merge lands on the survivor's timeline.
    late = catalog_event(
        "value",
        "crm.value.offer.issued",
        {
            "id": "o-late",
            "customer_id": merged["id"],
            "kind": "manual",
            "title": "Late offer",
            "issued_at": "2026-01-05T00:00:00Z",
        },
        merged["id"],
    )
    await publish(suite.nats.url, late, late.id)
    await _json_when(
        engage.client,
        f"/v1/customers/{survivor['id']}/timeline",
        lambda b: late.id in {i["event_id"] for i in b["items"]},
        "late event on the survivor",
    )
    await _merged_away(engage.client, f"/v1/customers/{merged['id']}/timeline", survivor["id"])


async def test_engage_moves_consent_and_keeps_the_newest_state_per_purpose_and_channel(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    for customer in (survivor, merged):
        await _json_when(engage.client, f"/v1/customers/{customer['id']}/consent", lambda b: True, "known")

    def entry(purpose, channel, granted, day):
        basis = "consent" if purpose == "marketing" else "legitimate_interest"
        return {
            "purpose": purpose,
            "channel": channel,
            "granted": granted,
            "legal_basis": basis,
            "changed_at": f"2026-03-{day:02d}T10:00:00Z",
        }

    entries = {
        survivor["id"]: [entry("marketing", "email", True, 1), entry("profiling", "chat", False, 9)],
        # The merged side's withdrawal is newer: it is kept. Its old profiling grant is not.
        # Its research consent on sms is the survivor's now.
        merged["id"]: [
            entry("marketing", "email", False, 5),
            entry("profiling", "chat", True, 2),
            entry("research", "sms", True, 3),
        ],
    }
    for customer_id, bodies in entries.items():
        for body in bodies:
            response = await engage.client.post(f"/v1/customers/{customer_id}/consent", json=body)
            assert response.status_code == 201, response.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    body = await _json_when(
        engage.client,
        f"/v1/customers/{survivor['id']}/consent",
        lambda b: len(b["items"]) == 5,
        "the merged ledger on the survivor",
    )
    assert [(s["purpose"], s["channel"], s["granted"], s["changed_at"][:10]) for s in body["current"]] == [
        ("marketing", "email", False, "2026-03-05"),
        ("profiling", "chat", False, "2026-03-09"),
        ("research", "sms", True, "2026-03-03"),
    ]
    assert {i["customer_id"] for i in body["items"]} == {survivor["id"]}
    await _merged_away(engage.client, f"/v1/customers/{merged['id']}/consent", survivor["id"])
    refused = await engage.client.post(f"/v1/customers/{merged['id']}/consent", json=entry("research", "sms", True, 4))
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


# --- network ---------------------------------------------------------------------------------


async def test_network_repoints_referrals_and_voids_the_self_referral(suite):
    identify = await start(suite, "identify")
    network = await start(suite, "network")
    referrer = await create_customer(identify, email="r@example.com")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com", referred_by=referrer["id"])
    friend = await create_customer(identify, email="f@example.com", referred_by=merged["id"])
    within = await create_customer(identify, email="w@example.com", referred_by=survivor["id"])
    for who, count in ((referrer, 1), (merged, 1), (survivor, 1)):
        await _json_when(
            network.client,
            f"/v1/customers/{who['id']}/referrals",
            lambda b, n=count: len(b["items"]) == n,
            "referrals recorded",
        )

    await _merge(identify, survivor["id"], [merged["id"], within["id"]], suite.nats.url)
    mine = await _json_when(
        network.client,
        f"/v1/customers/{survivor['id']}/referrals",
        lambda b: len(b["items"]) == 2 and b["items"][1]["status"] == "void",
        "the merged customer's referral moved, the self-referral void",
    )
    # The self-referral stays on the survivor's list, void and why, naming the id it was made for.
    assert [(r["referred_id"], r["status"], r["void_reason"]) for r in mine["items"]] == [
        (friend["id"], "pending", None),
        (within["id"], "void", "self_referral"),
    ]
    theirs = (await network.client.get(f"/v1/customers/{referrer['id']}/referrals")).json()
    assert [(r["referred_id"], r["status"]) for r in theirs["items"]] == [(survivor["id"], "pending")]
    await _merged_away(network.client, f"/v1/customers/{merged['id']}/referrals", survivor["id"])


async def test_value_moves_referral_rewards_to_the_survivor(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    data = {
        "referral_id": "r-1",
        "referrer_id": merged["id"],
        "referred_id": "friend",
        "points": 100,
        "transaction_id": "t-1",
        "rewarded_at": "2026-04-01T00:00:00Z",
    }
    rewarded = catalog_event("network", "crm.network.referral.rewarded", data, merged["id"])
    await publish(suite.nats.url, rewarded, rewarded.id)
    await _json_when(
        value.client, f"/v1/customers/{merged['id']}/offers", lambda b: len(b["items"]) == 1, "the reward issued"
    )
    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    offers = await _json_when(
        value.client, f"/v1/customers/{survivor['id']}/offers", lambda b: len(b["items"]) == 1, "the reward moved"
    )
    assert offers["items"][0]["points"] == 100

    async def reward_owner():
        async with value.runtime.db.reader() as session:
            return (await session.execute(text("SELECT customer_id FROM referral_rewards"))).scalar()

    assert await wait_until(lambda: _when_equal(reward_owner, survivor["id"]), what="the reward row moved")


async def _when_equal(read, expected):
    return await read() == expected


async def test_network_moves_relations_and_purchases_and_collapses_the_same_relation(suite):
    identify = await start(suite, "identify")
    network = await start(suite, "network")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    for who in (survivor, merged):
        await _json_when(network.client, f"/v1/customers/{who['id']}/network", lambda b: True, "network knows them")
    await _purchase(identify, merged["id"], 1)

    async def stakeholder(kind, name):
        return (await network.client.post("/v1/stakeholders", json={"kind": kind, "name": name})).json()

    async def relate(cid, sid, relation, started_at):
        body = {"stakeholder_id": sid, "relation": relation, "started_at": started_at}
        response = await network.client.post(f"/v1/customers/{cid}/relations", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    ann, bob, acme = (
        await stakeholder("employee", "Ann"),
        await stakeholder("employee", "Bob"),
        await stakeholder("partner", "Acme"),
    )
    own_manager = await relate(survivor["id"], bob["id"], "account_manager_of", "2026-01-01T00:00:00Z")
    later_resale = await relate(survivor["id"], acme["id"], "reseller_of", "2026-02-01T00:00:00Z")
    their_manager = await relate(merged["id"], ann["id"], "account_manager_of", "2026-03-01T00:00:00Z")
    earlier_resale = await relate(merged["id"], acme["id"], "reseller_of", "2026-01-15T00:00:00Z")
    introduced = await relate(merged["id"], acme["id"], "introduced", "2026-01-15T00:00:00Z")
    await _json_when(
        network.client,
        f"/v1/stakeholders/{acme['id']}/customers",
        lambda b: b["revenue"] == 10.0,
        "the merged customer's purchase counted",
    )

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    net = await _json_when(
        network.client,
        f"/v1/customers/{survivor['id']}/network",
        lambda b: len(b["history"]) == 5 and len(b["current"]) == 3,
        "the merged customer's relations moved and collapsed",
    )
    # The survivor keeps its own account manager; the same resale relation keeps its earliest period.
    assert {r["id"] for r in net["current"]} == {own_manager["id"], earlier_resale["id"], introduced["id"]}
    ended = {r["id"]: r for r in net["history"] if r["ended_at"] is not None}
    assert set(ended) == {their_manager["id"], later_resale["id"]}
    assert {(r["ended_reason"], r["ended_by"], r["customer_id"]) for r in ended.values()} == {
        ("merged", "merge", survivor["id"])
    }
    ends = await _read_stream(suite.nats.url, "crm.network.relation.ended", 2, settle=True)
    assert {(e["subject"], e["data"]["reason"]) for e in ends} == {(survivor["id"], "merged")}
    # The purchase is the survivor's now, still Acme's customer's.
    acme_customers = (await network.client.get(f"/v1/stakeholders/{acme['id']}/customers")).json()
    assert {i["customer_id"] for i in acme_customers["items"]} == {survivor["id"]}
    assert (acme_customers["customers"], acme_customers["revenue"]) == (1, 10.0)

    await _merged_away(network.client, f"/v1/customers/{merged['id']}/network", survivor["id"])
    refused = await network.client.post(
        f"/v1/customers/{merged['id']}/relations", json={"stakeholder_id": acme["id"], "relation": "introduced"}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


async def test_network_webhook_delivery_logs_about_merged_customers_name_the_survivor(suite):
    from tests.services.webhook_support import Receiver

    identify = await start(suite, "identify")
    network = await suite.start("network", webhook_allow_hosts=("127.0.0.1",))
    async with Receiver() as receiver:
        made = await network.client.post(
            "/v1/webhooks", json={"url": receiver.url("/hook"), "event_types": ["crm.identify.customer.created"]}
        )
        assert made.status_code == 201, made.text
        survivor = await create_customer(identify, email="s@example.com")
        merged = await create_customer(identify, email="m@example.com")
        await _json_when(
            network.client,
            f"/v1/webhooks/{made.json()['id']}/deliveries",
            lambda b: len(b["items"]) == 2,
            "both deliveries logged",
        )
        await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)

        def logged_under_survivor(body):
            [table] = [t for t in body["tables"] if t["table"] == "webhook_deliveries"]
            return sorted(row["customer_id"] for row in table["rows"]) == [survivor["id"]] * 2

        await _json_when(
            network.client,
            f"/internal/customers/{survivor['id']}/personal-data",
            logged_under_survivor,
            "the merged customer's delivery log rows name the survivor",
        )


# --- value -----------------------------------------------------------------------------------


async def test_value_moves_offers_to_the_survivor(suite):
    identify = await start(suite, "identify")
    await start(suite, "lifecycle")
    value = await start(suite, "value")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    await _purchase(identify, survivor["id"], 1)
    await _purchase(identify, merged["id"], 2)
    for who in (survivor, merged):
        await _json_when(
            value.client, f"/v1/customers/{who['id']}/offers", lambda b: len(b["items"]) == 1, "welcome offer"
        )
    manual = await value.client.post(
        "/v1/offers", json={"customer_id": merged["id"], "kind": "loyalty", "title": "Free shipping"}
    )
    assert manual.status_code == 201, manual.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    offers = await _json_when(
        value.client, f"/v1/customers/{survivor['id']}/offers", lambda b: len(b["items"]) == 3, "offers moved"
    )
    assert sorted(o["kind"] for o in offers["items"]) == ["loyalty", "welcome", "welcome"]
    assert {o["customer_id"] for o in offers["items"]} == {survivor["id"]}
    await _merged_away(value.client, f"/v1/customers/{merged['id']}/offers", survivor["id"])
    refused = await value.client.post(
        "/v1/offers", json={"customer_id": merged["id"], "kind": "loyalty", "title": "Another"}
    )
    assert refused.status_code == 409 and survivor["id"] in refused.json()["detail"]

    # The survivor kept one automatic welcome offer: a late `new` stage of the merged id issues none.
    late = catalog_event(
        "lifecycle",
        "crm.lifecycle.stage.changed",
        {
            "customer_id": merged["id"],
            "from_stage": "prospect",
            "to_stage": "new",
            "at": "2026-01-03T00:00:00Z",
            "cause_event_id": "x",
        },
        merged["id"],
    )
    await publish(suite.nats.url, late, late.id)
    await wait_until(lambda: _handled(value, late), what="late stage change applied")
    assert len((await value.client.get(f"/v1/customers/{survivor['id']}/offers")).json()["items"]) == 3


async def test_value_moves_value_map_ratings_to_the_survivor(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    for who in (survivor, merged):
        await _json_when(value.client, f"/v1/customers/{who['id']}/value-ratings", lambda b: True, "value knows")

    def rating(customer_id: str, score: int) -> dict:
        return {"customer_id": customer_id, "attribute": "quality", "subject": "us", "score": score}

    entered = await value.client.post(
        "/v1/value-map/ratings:batch", json={"ratings": [rating(survivor["id"], 8), rating(merged["id"], 4)]}
    )
    assert entered.status_code == 201, entered.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    ratings = await _json_when(
        value.client,
        f"/v1/customers/{survivor['id']}/value-ratings",
        lambda b: len(b["items"]) == 2,
        "ratings moved",
    )
    assert sorted(r["score"] for r in ratings["items"]) == [4, 8]
    assert {r["customer_id"] for r in ratings["items"]} == {survivor["id"]}
    await _merged_away(value.client, f"/v1/customers/{merged['id']}/value-ratings", survivor["id"])
    refused = await value.client.post("/v1/value-map/ratings:batch", json={"ratings": [rating(merged["id"], 5)]})
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged", refused.text

    # A survey answer of the merged id read after the merge is the survivor's.
    late = catalog_event(
        "engage",
        "crm.engage.feedback.received",
        {
            "response_id": "late-1",
            "survey_id": "s-1",
            "customer_id": merged["id"],
            "ratings": [{"attribute": "service", "subject": "us", "score": 6}],
            "received_at": "2026-01-03T00:00:00Z",
        },
        merged["id"],
    )
    await publish(suite.nats.url, late, late.id)
    await wait_until(lambda: _handled(value, late), what="late survey answer applied")
    items = (await value.client.get(f"/v1/customers/{survivor['id']}/value-ratings")).json()["items"]
    assert sorted(r["score"] for r in items) == [4, 6, 8]


async def test_value_moves_ideas_votes_and_comments_and_keeps_one_vote_per_idea(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    other = await create_customer(identify, email="o@example.com")
    for who in (survivor, merged, other):
        await _json_when(value.client, f"/v1/customers/{who['id']}/ideas", lambda b: True, "value knows the customer")

    async def idea(customer_id: str, title: str) -> str:
        body = {"customer_id": customer_id, "title": title, "description": "Please", "product_area": "app"}
        response = await value.client.post("/v1/ideas", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    both, only_merged = await idea(other["id"], "Dark mode"), await idea(other["id"], "Widgets")
    own = await idea(merged["id"], "Gift cards")
    for customer_id, idea_id in ((survivor["id"], both), (merged["id"], both), (merged["id"], only_merged)):
        vote = await value.client.post(f"/v1/ideas/{idea_id}/votes", json={"customer_id": customer_id})
        assert vote.status_code == 201, vote.text
    said = await value.client.post(f"/v1/ideas/{both}/comments", json={"customer_id": merged["id"], "body": "Yes"})
    assert said.status_code == 201

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    mine = await _json_when(
        value.client, f"/v1/customers/{survivor['id']}/ideas", lambda b: len(b["items"]) == 1, "ideas moved"
    )
    assert mine["items"][0]["id"] == own
    # The pair voted twice for one idea: one vote stays; the other idea keeps its vote, now the survivor's.
    assert (await value.client.get(f"/v1/ideas/{both}")).json()["votes"] == 1
    assert (await value.client.get(f"/v1/ideas/{only_merged}")).json()["votes"] == 1
    again = await value.client.post(f"/v1/ideas/{only_merged}/votes", json={"customer_id": survivor["id"]})
    assert again.status_code == 409 and again.json()["error"] == "already_voted"
    comments = (await value.client.get(f"/v1/ideas/{both}/comments")).json()["items"]
    assert [c["customer_id"] for c in comments] == [survivor["id"]]
    await _merged_away(value.client, f"/v1/customers/{merged['id']}/ideas", survivor["id"])
    refused = await value.client.post(
        "/v1/ideas", json={"customer_id": merged["id"], "title": "X", "description": "Y", "product_area": "app"}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


async def test_engage_moves_community_members_posts_and_helpful_marks_and_announces_the_totals(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    client = engage.client
    survivor, merged, other = [await create_customer(identify, email=f"{n}@example.com") for n in ("s", "m", "o")]
    for customer in (survivor, merged, other):
        await _json_when(client, f"/v1/customers/{customer['id']}/communities", lambda b: True, "known to engage")
    club = (await client.post("/v1/communities", json={"name": "Club", "scope_type": "list"})).json()
    base = f"/v1/communities/{club['id']}"
    for customer in (survivor, merged, other):
        assert (await client.post(f"{base}/members", json={"customer_id": customer["id"]})).status_code == 201

    async def topic(author: dict) -> str:
        body = {"author_customer_id": author["id"], "title": "Tips", "body": "Ask me"}
        response = await client.post(f"{base}/posts", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    merged_topic, other_topic = await topic(merged), await topic(other)
    # Before: the merged customer's topic has two marks (survivor's, other's), other's two
    # (survivor's and the merged customer's: the same person twice, once merged).
    for post_id, marker in (
        (merged_topic, survivor),
        (merged_topic, other),
        (other_topic, survivor),
        (other_topic, merged),
    ):
        response = await client.post(f"{base}/posts/{post_id}/helpful", json={"customer_id": marker["id"]})
        assert response.status_code == 201, response.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    totals = await _read_stream(suite.nats.url, "crm.engage.community.helpfulness.changed", 6)
    # After: the survivor's own mark on what is now its own topic goes, and other's topic keeps one mark.
    assert sorted((t["data"]["customer_id"], t["data"]["helpful_marks"]) for t in totals[4:]) == sorted(
        [(survivor["id"], 1), (other["id"], 1)]
    )
    thread = (await client.get(f"{base}/posts/{merged_topic}")).json()
    assert (thread["author_customer_id"], thread["helpful_marks"]) == (survivor["id"], 1)
    assert (await client.get(f"{base}/posts/{other_topic}")).json()["helpful_marks"] == 1
    members = (await client.get(f"{base}/members")).json()["items"]
    assert sorted(m["customer_id"] for m in members) == sorted([survivor["id"], other["id"]])
    mine = (await client.get(f"/v1/customers/{survivor['id']}/communities")).json()["items"]
    assert [m["community_id"] for m in mine] == [club["id"]]

    await _merged_away(client, f"/v1/customers/{merged['id']}/communities", survivor["id"])
    refused = await client.post(f"{base}/posts/{other_topic}/helpful", json={"customer_id": merged["id"]})
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


async def test_engage_moves_conversations_and_messages_to_the_survivor(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    await _json_when(
        engage.client, f"/v1/customers/{merged['id']}/timeline", lambda b: len(b["items"]) == 1, "merged customer known"
    )
    message = {"channel": "chat", "direction": "inbound", "body": "Hello?"}
    recorded = await engage.client.post("/v1/messages", json={"customer_id": merged["id"], **message})
    assert recorded.status_code == 201, recorded.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    moved = await _json_when(
        engage.client,
        f"/v1/customers/{survivor['id']}/conversations",
        lambda b: len(b["items"]) == 1,
        "the conversation on the survivor",
    )
    assert moved["items"][0]["id"] == recorded.json()["conversation_id"]
    assert (await engage.client.get(f"/v1/messages/{recorded.json()['id']}")).json()["customer_id"] == survivor["id"]
    await _merged_away(engage.client, f"/v1/customers/{merged['id']}/conversations", survivor["id"])
    refused = await engage.client.post("/v1/messages", json={"customer_id": merged["id"], **message})
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"


async def test_value_moves_campaign_memberships_consents_and_purchases_to_the_survivor(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    survivor = await create_customer(identify, email="s@example.com")
    merged = await create_customer(identify, email="m@example.com")
    s, m = survivor["id"], merged["id"]
    # Only the merged customer consented: after the merge the survivor has its consent.
    await _publish_all(suite.nats.url, [_scored(s, "champions"), _scored(m, "champions"), _consent(m)])
    for who in (s, m):
        await _json_when(value.client, f"/v1/customers/{who}/offers", lambda b: True, "value knows the customer")
    tpl = await _template(value)
    body = {"name": "C", "channel": "email", "template_id": tpl["id"], "message_template_id": "t", "holdout_share": 0}
    campaign = (await value.client.post("/v1/campaigns", json=body)).json()

    async def one_in_audience():
        return (await value.client.post(f"/v1/campaigns/{campaign['id']}/preview")).json()["count"] == 1

    await wait_until(one_in_audience, what="the merged customer's consent")
    launched = await value.client.post(f"/v1/campaigns/{campaign['id']}/launch")
    assert launched.status_code == 200, launched.text
    await _publish_all(suite.nats.url, [_purchase_event("t-m", m, "40.00", datetime.now(UTC) + timedelta(minutes=1))])
    await _json_when(
        value.client,
        f"/v1/campaigns/{campaign['id']}/results",
        lambda b: b["treatment"]["revenue"] == 40.0,
        "the merged customer's purchase",
    )

    await _merge(identify, s, [m], suite.nats.url)
    promotions = await _json_when(
        value.client, f"/v1/customers/{s}/promotions", lambda b: len(b["items"]) == 1, "membership moved"
    )
    assert promotions["items"][0]["campaign_id"] == campaign["id"] and promotions["items"][0]["group"] == "treatment"
    await _merged_away(value.client, f"/v1/customers/{m}/promotions", s)
    members = (await value.client.get(f"/v1/campaigns/{campaign['id']}/members")).json()["items"]
    assert [x["customer_id"] for x in members] == [s]
    results = (await value.client.get(f"/v1/campaigns/{campaign['id']}/results")).json()
    assert results["treatment"]["customers"] == 1 and results["treatment"]["revenue"] == 40.0
    # The consent followed: a new campaign's audience is the survivor.
    again = (await value.client.post("/v1/campaigns", json=body)).json()
    preview = (await value.client.post(f"/v1/campaigns/{again['id']}/preview")).json()
    assert preview["count"] == 1 and preview["sample"][0]["customer_id"] == s


async def test_engage_moves_survey_responses_and_invitations_to_the_survivor(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    survivor = await create_customer(identify, email="fs@example.com", name="Fay")
    merged = await create_customer(identify, email="fm@example.com", name="Fay Twin")
    await _json_when(
        engage.client, f"/v1/customers/{merged['id']}/feedback", lambda b: b["items"] == [], "merged customer known"
    )
    survey = await engage.client.post(
        "/v1/surveys", json={"name": "S", "questions": [{"id": "nps", "type": "nps", "text": "Recommend us?"}]}
    )
    assert survey.status_code == 201, survey.text
    survey_id = survey.json()["id"]
    answer = await engage.client.post(
        f"/v1/surveys/{survey_id}/responses", json={"customer_id": merged["id"], "answers": {"nps": 10}}
    )
    assert answer.status_code == 201, answer.text
    # An invitation before the merge: its link answers as the survivor, and its quiet period is the survivor's.
    sent = await engage.client.post(f"/v1/surveys/{survey_id}/send", json={"customer_id": merged["id"]})
    assert sent.status_code == 201, sent.text

    await _merge(identify, survivor["id"], [merged["id"]], suite.nats.url)
    moved = await _json_when(
        engage.client, f"/v1/customers/{survivor['id']}/feedback", lambda b: len(b["items"]) == 1, "responses moved"
    )
    assert moved["items"][0]["id"] == answer.json()["id"] and moved["items"][0]["customer_id"] == survivor["id"]
    await _merged_away(engage.client, f"/v1/customers/{merged['id']}/feedback", survivor["id"])
    for path, body in (
        (f"/v1/surveys/{survey_id}/responses", {"customer_id": merged["id"], "answers": {"nps": 1}}),
        (f"/v1/surveys/{survey_id}/send", {"customer_id": merged["id"]}),
    ):
        refused = await engage.client.post(path, json=body)
        assert refused.status_code == 409 and refused.json()["error"] == "customer_merged", refused.text
    quiet = await engage.client.post(f"/v1/surveys/{survey_id}/send", json={"customer_id": survivor["id"]})
    assert quiet.status_code == 409 and quiet.json()["error"] == "quiet_period", quiet.text
    token = sent.json()["link"].rsplit("/", 1)[1]
    linked = await engage.client.post(f"/v1/feedback/{token}", json={"answers": {"nps": 7}})
    assert linked.status_code == 201, linked.text
    both = (await engage.client.get(f"/v1/customers/{survivor['id']}/feedback")).json()["items"]
    assert {r["customer_id"] for r in both} == {survivor["id"]} and len(both) == 2
