"""lifecycle's stage machine: rules, sweeps, their lease, churn risk and the at-risk list, against
a real nats-server and database. identify's events are published on the bus as identify does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from services.lifecycle.main import DEFINITION, create_app
from services.lifecycle.models import CustomerStage, profiles
from services.lifecycle.stages import repository, sweeps
from shared.db.database import Database, utcnow
from shared.db.ids import uuid7
from shared.db.uow import transaction
from shared.events.envelope import make_event
from tests.services.test_lifecycle import _handled, _no_pending, _publish, _read_stream
from tests.support import wait_until

NOW = datetime.now(UTC)


def _event(type_: str, data: dict, customer_id: str, service: str = "identify"):
    return make_event(service=service, type=type_, data=data, subject=customer_id)


async def _buy(suite, cid: str, count: int, at: datetime) -> None:
    """identify's purchase event: the customer's `count`th purchase, made at `at`."""

    data = {
        "id": str(uuid7()),
        "customer_id": cid,
        "amount": "10.00",
        "currency": "USD",
        "occurred_at": at,
        "purchase_count": count,
    }
    await _publish(suite.nats.url, _event("crm.identify.transaction.recorded", data, cid))


async def _customer(suite, lifecycle, purchases: list[datetime]) -> str:
    """A customer created and buying at these times, once lifecycle has it all."""

    cid = str(uuid7())
    await _publish(suite.nats.url, _event("crm.identify.customer.created", {"id": cid, "created_at": NOW}, cid))
    for n, at in enumerate(purchases, start=1):
        await _buy(suite, cid, n, at)
    await wait_until(lambda: _profiled(lifecycle, cid, len(purchases)), what="lifecycle has the purchases")
    return cid


async def _profiled(lifecycle, cid: str, purchases: int) -> bool:
    async with lifecycle.runtime.db.reader() as session:
        profile = await profiles.get(session, cid)
    stage = (await lifecycle.client.get(f"/v1/customers/{cid}/lifecycle")).json()
    return (purchases == 0 or (profile is not None and profile["purchases"] == purchases)) and stage.get(
        "purchase_count"
    ) == purchases


async def _scored(suite, lifecycle, cid: str, *, probability_alive: float, predicted_clv: float) -> None:
    data = {
        "customer_id": cid,
        "model_version": 1,
        "segment": "at_risk",
        "kinds": [],
        "scored_at": utcnow(),
        "probability_alive": probability_alive,
        "predicted_clv": predicted_clv,
    }
    event = _event("crm.identify.customer.scored", data, cid)
    await _publish(suite.nats.url, event)
    await wait_until(lambda: _handled(lifecycle, event), what="score applied")


async def _lifecycle(lifecycle, cid: str) -> dict:
    return (await lifecycle.client.get(f"/v1/customers/{cid}/lifecycle")).json()


async def _sweep(lifecycle, **body) -> dict:
    response = await lifecycle.client.post("/v1/lifecycle/sweeps", json=body or None)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_customer_going_quiet_is_at_risk_then_churned_then_won_back_each_with_its_reason(suite):
    lifecycle = await suite.start("lifecycle")
    # Two purchases 10 days apart, the last 300 days ago: 30 expected gaps without buying.
    quiet = await _customer(suite, lifecycle, [NOW - timedelta(days=310), NOW - timedelta(days=300)])
    # Buying every 10 days, the last 2 days ago: on time.
    steady = await _customer(suite, lifecycle, [NOW - timedelta(days=12), NOW - timedelta(days=2)])
    prospect = await _customer(suite, lifecycle, [])
    await _scored(suite, lifecycle, quiet, probability_alive=0.2, predicted_clv=500.0)
    await _scored(suite, lifecycle, steady, probability_alive=0.95, predicted_clv=800.0)

    # The first sweep over this (imported) history: its transitions are history.
    first = await _sweep(lifecycle)
    assert first["status"] == "done" and first["trigger"] == "request"
    assert first["historical"] is True and first["rule_version"] == 1
    assert first["evaluated"] == 3 and first["transitions"] == 1
    assert first["risk_changes"] == 2  # the two buyers have a risk now; the prospect none
    body = await _lifecycle(lifecycle, quiet)
    assert body["stage"] == "at_risk"
    moved = body["history"][-1]
    assert moved["rule"] == "gone_quiet" and moved["rule_version"] == 1 and moved["historical"] is True
    assert moved["from"] == "active" and moved["event_id"] == first["sweep_id"]
    assert moved["values"]["recency_ratio"] >= 29
    # Its churn risk: nearly certain (0.8 from probability alive, the recency driver at its top).
    risk = body["churn_risk"]
    assert risk["band"] == "high" and risk["risk"] == 1.0
    assert [d["driver"] for d in risk["drivers"]] == ["recency", "alive"]
    assert risk["clv_at_risk"] == 500.0
    steady_body = await _lifecycle(lifecycle, steady)
    assert steady_body["stage"] == "active" and steady_body["churn_risk"]["band"] == "low"
    assert (await _lifecycle(lifecycle, prospect))["churn_risk"] is None

    # One step per sweep: 30 gaps without buying is also past `lapsed`'s four, so the second
    # sweep takes it on to churned; the third finds nothing to do (idempotent).
    second = await _sweep(lifecycle)
    assert second["historical"] is False and second["transitions"] == 1
    third = await _sweep(lifecycle)
    assert third["transitions"] == 0 and third["risk_changes"] == 0 and third["evaluated"] == 3
    body = await _lifecycle(lifecycle, quiet)
    assert body["stage"] == "churned"
    assert body["history"][-1]["rule"] == "lapsed" and body["history"][-1]["historical"] is False

    # Renewed buying: a purchase after it churned wins it back at once, no sweep needed.
    await _buy(suite, quiet, 3, utcnow())
    body = await wait_until(lambda: _in_stage(lifecycle, quiet, "won_back"), what="won back")
    assert body["history"][-1]["rule"] == "renewed_buying" and body["history"][-1]["values"] == {"purchase_count": 3}

    # The events say the same: rule, version, values, and whether it is history.
    await wait_until(lambda: _no_pending(lifecycle), what="outbox published")
    changes = await _read_stream(suite.nats.url, "crm.lifecycle.stage.changed", 10)
    swept = [e["data"] for e in changes if e["data"]["cause_event_id"].startswith("sweep:")]
    assert [(d["to_stage"], d["rule"], d["historical"]) for d in swept] == [
        ("at_risk", "gone_quiet", True),
        ("churned", "lapsed", False),
    ]
    assert swept[0]["cause_event_id"] == f"sweep:{first['sweep_id']}" and swept[0]["rule_version"] == 1
    assert swept[0]["values"]["recency_ratio"] >= 29

    # The sweeps, newest first.
    listed = (await lifecycle.client.get("/v1/lifecycle/sweeps", params={"limit": 2})).json()
    assert [s["sweep_id"] for s in listed["items"]] == [third["sweep_id"], second["sweep_id"]]
    rest = (await lifecycle.client.get("/v1/lifecycle/sweeps", params={"cursor": listed["next_cursor"]})).json()
    assert [s["sweep_id"] for s in rest["items"]] == [first["sweep_id"]]


async def _in_stage(lifecycle, cid: str, stage: str):
    body = await _lifecycle(lifecycle, cid)
    return body if body.get("stage") == stage else None


async def test_churn_risk_bands_are_announced_and_the_at_risk_list_ranks_by_clv_at_risk(suite):
    lifecycle = await suite.start("lifecycle")
    recent = [NOW - timedelta(days=12), NOW - timedelta(days=2)]
    a = await _customer(suite, lifecycle, recent)
    b = await _customer(suite, lifecycle, recent)
    c = await _customer(suite, lifecycle, recent)
    await _sweep(lifecycle)  # the first sweep (history): every buyer starts low, nothing announced
    await _scored(suite, lifecycle, a, probability_alive=0.5, predicted_clv=1000.0)  # risk 0.5: medium
    await _scored(suite, lifecycle, b, probability_alive=0.2, predicted_clv=400.0)  # risk 0.8: high
    await _scored(suite, lifecycle, c, probability_alive=0.9, predicted_clv=5000.0)  # risk 0.1: low

    sweep = await _sweep(lifecycle)
    assert sweep["risk_changes"] == 3
    # b becomes at risk by its rule (probability alive below 0.3) too.
    assert (await _lifecycle(lifecycle, b))["history"][-1]["rule"] == "unlikely_alive"

    # By CLV at risk, highest first: a 1000 × 0.5 = 500, c 5000 × 0.1 = 500, b 400 × 0.8 = 320.
    everyone = await _all(lifecycle, "/v1/lifecycle/at-risk", {"limit": 1})
    assert [i["customer_id"] for i in everyone] == sorted([a, c]) + [b]
    assert [i["clv_at_risk"] for i in everyone] == [500.0, 500.0, 320.0]
    assert everyone[2]["band"] == "high" and everyone[2]["stage"] == "at_risk"
    assert everyone[2]["drivers"][0] == {"driver": "alive", "weight": 0.8, "value": 0.2}
    high = (await lifecycle.client.get("/v1/lifecycle/at-risk", params={"band": "high"})).json()
    assert [i["customer_id"] for i in high["items"]] == [b]
    staged = (await lifecycle.client.get("/v1/lifecycle/at-risk", params={"stage": ["active"], "min_risk": 0.3})).json()
    assert [i["customer_id"] for i in staged["items"]] == [a]
    bad = await lifecycle.client.get("/v1/lifecycle/at-risk", params={"band": "extreme"})
    assert bad.status_code == 422 and "band" in bad.text

    # Crossing a band announces it; c stayed low, so only a and b.
    await wait_until(lambda: _no_pending(lifecycle), what="outbox published")
    crossed = await _read_stream(suite.nats.url, "crm.lifecycle.churn_risk.changed", 2, settle=True)
    by_customer = {e["data"]["customer_id"]: e["data"] for e in crossed}
    assert by_customer[a]["band"] == "medium" and by_customer[a]["from_band"] == "low"
    assert by_customer[b]["band"] == "high" and by_customer[b]["clv_at_risk"] == 320.0


async def _all(lifecycle, path: str, params: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        page = (await lifecycle.client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_feedback_and_escalations_move_a_customer_at_once(suite):
    lifecycle = await suite.start("lifecycle")
    recent = [NOW - timedelta(days=12), NOW - timedelta(days=2)]
    unhappy, escalated, happy = [await _customer(suite, lifecycle, recent) for _ in range(3)]
    await _sweep(lifecycle)
    feedback = [(unhappy, 3), (happy, 10)]
    signal_ids = {}
    for cid, nps in feedback:
        data = {"response_id": str(uuid7()), "survey_id": "s1", "customer_id": cid, "nps": nps, "received_at": utcnow()}
        event = _event("crm.engage.feedback.received", data, cid, service="engage")
        await _publish(suite.nats.url, event)
        await wait_until(lambda e=event: _handled(lifecycle, e), what="feedback applied")
        signal_ids[cid] = event.id
    data = {"ticket_id": str(uuid7()), "customer_id": escalated, "reason": "sla", "escalated_at": utcnow()}
    event = _event("crm.lifecycle.ticket.escalated", data, escalated, service="lifecycle")
    await _publish(suite.nats.url, event)
    await wait_until(lambda: _handled(lifecycle, event), what="escalation applied")
    signal_ids[escalated] = event.id

    # Moved by the signal itself (its consumer evaluates the customer's rules), not the next sweep.
    unhappy_body = await _lifecycle(lifecycle, unhappy)
    assert unhappy_body["stage"] == "at_risk"
    assert unhappy_body["history"][-1]["rule"] == "detractor"
    assert unhappy_body["history"][-1]["event_id"] == signal_ids[unhappy]
    assert unhappy_body["history"][-1]["values"] == {"detractor": True}
    assert {d["driver"] for d in unhappy_body["churn_risk"]["drivers"]} == {"detractor"}
    escalated_body = await _lifecycle(lifecycle, escalated)
    assert escalated_body["stage"] == "at_risk" and escalated_body["history"][-1]["rule"] == "escalated"
    assert escalated_body["history"][-1]["event_id"] == signal_ids[escalated]
    assert (await _lifecycle(lifecycle, happy))["stage"] == "active"
    assert (await _sweep(lifecycle))["transitions"] == 0  # nothing left for the sweep

    # A signal counts once per stage: a purchase brings the detractor back to active, and the
    # old answer does not send it at risk again.
    await _buy(suite, unhappy, 3, utcnow())
    await wait_until(lambda: _in_stage(lifecycle, unhappy, "active"), what="back to active")
    assert (await _sweep(lifecycle))["transitions"] == 0


async def test_rules_are_versioned_a_change_re_evaluates_everyone_and_impossible_rules_are_422(suite):
    lifecycle = await suite.start("lifecycle")
    cid = await _customer(suite, lifecycle, [NOW - timedelta(days=12), NOW - timedelta(days=2)])
    defaults = (await lifecycle.client.get("/v1/lifecycle/rules")).json()
    assert defaults["version"] == 1 and defaults["created_at"] is None
    assert [r["name"] for r in defaults["rules"]][:2] == ["gone_quiet", "unlikely_alive"]
    assert defaults["rules"][0]["from"] == ["new", "active", "loyal", "won_back"]

    rules = [
        {
            "name": "two_and_done",
            "from": ["active"],
            "to": "loyal",
            "when": [
                {"field": "purchases", "op": ">=", "value": 2},
                {"field": "escalated", "op": "==", "value": False},
            ],
        }
    ]
    bad_cases = [
        ({"field": "shoe_size", "op": ">=", "value": 2}, "body.rules.0.when.0.field"),
        ({"field": "purchases", "op": "=~", "value": 2}, "body.rules.0.when.0.op"),
        ({"field": "purchases", "op": ">=", "value": "two"}, "body.rules.0.when.0.value"),
        ({"field": "purchases", "op": ">=", "value": True}, "body.rules.0.when.0.value"),
        ({"field": "purchases", "op": ">=", "value": 10**30}, "body.rules.0.when.0.value"),
        ({"field": "detractor", "op": ">=", "value": True}, "body.rules.0.when.0.op"),
        ({"field": "detractor", "op": "==", "value": 1}, "body.rules.0.when.0.value"),
    ]
    for condition, field in bad_cases:
        refused = await lifecycle.client.put("/v1/lifecycle/rules", json={"rules": [{**rules[0], "when": [condition]}]})
        assert refused.status_code == 422, (condition, refused.text)
        assert field in [e["field"] for e in refused.json()["detail"]], (condition, refused.json())
    moves = [
        ({**rules[0], "from": ["prospect"]}, "body.rules.0.to"),
        ({**rules[0], "from": ["churned"], "to": "loyal"}, "body.rules.0.to"),
        ({**rules[0], "to": "hibernating"}, "body.rules.0.to"),
        ({**rules[0], "from": []}, "body.rules.0.from"),
        ({**rules[0], "name": "Two and done"}, "body.rules.0.name"),
        ({**rules[0], "colour": "red"}, "body.rules.0.colour"),
    ]
    for rule, field in moves:
        refused = await lifecycle.client.put("/v1/lifecycle/rules", json={"rules": [rule]})
        assert refused.status_code == 422, (rule, refused.text)
        assert field in [e["field"] for e in refused.json()["detail"]], (rule, refused.json())
    twice = await lifecycle.client.put("/v1/lifecycle/rules", json={"rules": rules * 2})
    assert twice.status_code == 422 and twice.json()["detail"][0]["field"] == "body.rules.1.name"
    # Nothing was written: still the defaults, and no sweep ran.
    assert (await lifecycle.client.get("/v1/lifecycle/rules")).json()["version"] == 1
    assert (await lifecycle.client.get("/v1/lifecycle/sweeps")).json()["items"] == []

    changed = await lifecycle.client.put("/v1/lifecycle/rules", json={"rules": rules})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["version"] == 2 and body["rules"] == rules
    assert body["sweep"]["trigger"] == "rules" and body["sweep"]["rule_version"] == 2
    assert body["sweep"]["transitions"] == 1
    moved = (await _lifecycle(lifecycle, cid))["history"][-1]
    assert (moved["to"], moved["rule"], moved["rule_version"]) == ("loyal", "two_and_done", 2)
    assert moved["values"] == {"purchases": 2, "escalated": False}
    assert (await lifecycle.client.get("/v1/lifecycle/rules")).json()["version"] == 2

    versions = (await lifecycle.client.get("/v1/lifecycle/rules/versions", params={"limit": 1})).json()
    assert [v["version"] for v in versions["items"]] == [2]
    older = await lifecycle.client.get("/v1/lifecycle/rules/versions", params={"cursor": versions["next_cursor"]})
    assert [v["version"] for v in older.json()["items"]] == [1]


async def test_one_replica_sweeps_at_a_time_under_the_lease(suite):
    """Two lifecycle runtimes on one database: while one holds the lease the other's sweep is
    409; a lease a dead replica left expires."""

    first = await suite.start("lifecycle", sweep_lease_s=60.0)
    await _customer(suite, first, [NOW - timedelta(days=3)])
    url = first.settings.database_url
    second = await suite._launch("lifecycle", create_app, url, {"sweep_lease_s": 60.0}, DEFINITION)

    # A sweep of the first replica is running: it holds the lease.
    async with transaction(first.runtime.db.writer) as session:
        assert await repository.take_lease(
            session, holder="replica-1-sweep", now=utcnow(), until=utcnow() + timedelta(seconds=60)
        )
    refused = await second.client.post("/v1/lifecycle/sweeps")
    assert refused.status_code == 409 and refused.json()["error"] == "sweep_running"
    assert "replica-1-sweep" in refused.json()["detail"]
    assert (await first.client.post("/v1/lifecycle/sweeps")).status_code == 409  # a lease holds its own replica off too
    # Nothing was recorded for the refused sweeps.
    assert (await second.client.get("/v1/lifecycle/sweeps")).json()["items"] == []

    # The first replica dies mid-sweep: its lease expires, and the second sweeps.
    async with transaction(first.runtime.db.writer) as session:
        await repository.take_lease(
            session, holder="replica-1-sweep", now=utcnow(), until=utcnow() - timedelta(seconds=1)
        )
    done = await _sweep(second)
    assert done["evaluated"] == 1
    # Released when done: the first can sweep again; after a later import of old data a
    # sweep can be asked to record history (true or false, nothing else).
    assert (await _sweep(first))["historical"] is False
    assert (await _sweep(first, historical=True))["historical"] is True
    refused = await first.client.post("/v1/lifecycle/sweeps", json={"historical": 0})
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "body.historical"


async def test_the_schedule_sweeps_and_a_restart_fails_a_sweep_left_running(suite):
    lifecycle = await suite.start("lifecycle", sweep_interval_s=0.2)
    await _customer(suite, lifecycle, [NOW - timedelta(days=3)])
    scheduled = await wait_until(lambda: _scheduled_sweep(lifecycle), what="a scheduled sweep")
    assert scheduled["trigger"] == "schedule" and scheduled["status"] == "done"

    # A sweep row left running by a process that stopped (no lease held): failed at the next start.
    db = Database.connect(lifecycle.settings.database_url, service="lifecycle")
    try:
        async with transaction(db.writer) as session:
            await repository.insert_sweep(
                session,
                {
                    "sweep_id": "left-running",
                    "trigger": "request",
                    "status": "running",
                    "holder": "left-running",
                    "rule_version": 1,
                    "historical": False,
                    "started_at": utcnow() - timedelta(hours=1),
                    "evaluated": 0,
                    "transitions": 0,
                    "risk_changes": 0,
                },
            )
        await sweeps.start(lifecycle.runtime)  # what a restarted process runs first
        async with db.reader() as session:
            assert (await repository.sweep(session, "left-running"))["status"] == "failed"
    finally:
        await db.dispose()


async def _scheduled_sweep(lifecycle):
    items = (await lifecycle.client.get("/v1/lifecycle/sweeps")).json()["items"]
    return next((s for s in items if s["trigger"] == "schedule" and s["status"] == "done"), None)


async def test_a_purchase_waits_for_a_sweep_that_holds_its_customer(suite):
    """PostgreSQL: a sweep chunk locks its customers' stage rows while it evaluates and moves
    them, and the purchase consumer locks the rows it decides from, so a purchase applied while
    a sweep moves its customer to at_risk reads at_risk afterwards (renewed buying: back to
    active, recorded), instead of writing back the stage it read before (the move lost)."""

    lifecycle = await suite.start("lifecycle")
    url = lifecycle.runtime.db.url
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: nothing runs between a chunk's read and its write")
    cid = await _customer(suite, lifecycle, [NOW - timedelta(days=12), NOW - timedelta(days=2)])
    stages = CustomerStage.__table__
    engine = create_async_engine(url)
    try:
        async with engine.connect() as sweep:
            await sweep.begin()
            # What a sweep chunk does: lock its customers, then move this one.
            await sweep.execute(select(stages.c.customer_id).where(stages.c.customer_id == cid).with_for_update())
            moved_at = utcnow()
            await sweep.execute(
                update(stages).where(stages.c.customer_id == cid).values(stage="at_risk", stage_since=moved_at)
            )
            await _buy(suite, cid, 3, utcnow())

            async def consumer_waits() -> bool:
                query = text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                async with engine.connect() as watcher:
                    return (await watcher.execute(query)).scalar_one() >= 1

            await wait_until(consumer_waits, what="the purchase consumer waits for the sweep's lock")
            await sweep.commit()
        await wait_until(lambda: _in_stage(lifecycle, cid, "active"), what="renewed buying after the sweep's move")
        body = await _lifecycle(lifecycle, cid)
        assert body["purchase_count"] == 3
        assert body["history"][-1]["rule"] == "renewed_buying"
    finally:
        await engine.dispose()


async def test_saving_stages_inserts_the_new_updates_the_changed_and_keeps_a_sweeps_columns(suite):
    """save_stages: one upsert (one statement on PostgreSQL) for a micro-batch's new and
    changed rows, the changed ones as stages_of read them (every column); the churn risk a
    sweep left on a row stays."""

    lifecycle = await suite.start("lifecycle")
    db = lifecycle.runtime.db
    kept, fresh = str(uuid7()), str(uuid7())
    at = utcnow().replace(microsecond=0)
    async with transaction(db.writer) as session:
        row = {"customer_id": kept, "stage": "new", "purchase_count": 1, "updated_at": at, "stage_since": at}
        await repository.save_stages(session, [row])
        await session.execute(
            update(CustomerStage).where(CustomerStage.customer_id == kept).values(churn_risk=0.4, churn_band="medium")
        )
    later = at + timedelta(days=3)
    async with transaction(db.writer) as session:
        moved = {"updated_at": later, "stage_since": later}
        changed = (await repository.stages_of(session, {kept}))[kept]
        assert changed["churn_risk"] == 0.4  # every column, as a micro-batch holds it
        changed.update(stage="active", purchase_count=2, churn_risk=0.9, **moved)  # not a stage column: not written
        await repository.save_stages(
            session, [changed, {"customer_id": fresh, "stage": "new", "purchase_count": 1, **moved}]
        )
    async with db.reader() as session:
        rows = {row.customer_id: row for row in (await session.execute(select(CustomerStage.__table__))).all()}
    assert (rows[kept].stage, rows[kept].purchase_count, rows[kept].stage_since) == ("active", 2, later)
    assert (rows[kept].churn_risk, rows[kept].churn_band) == (0.4, "medium")
    assert (rows[fresh].stage, rows[fresh].purchase_count, rows[fresh].churn_risk) == ("new", 1, None)
