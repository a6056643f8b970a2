"""lifecycle's win-back and retention playbooks against a real nats-server and database:
identify's scores and purchases and lifecycle's own stage changes as crafted events on the real
bus (tests/services/test_value_campaigns.py does the same for value), value issuing the offers
and measuring the playbook in the last test."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from services.lifecycle.models import profiles
from tests.services.test_engage import catalog_event, start
from tests.services.test_lifecycle import _read_stream
from tests.services.test_value_campaigns import _known, _publish_all, _purchase, _scored, _template
from tests.support import wait_until


def _id(n: int) -> str:
    return f"00000000-0000-7000-9000-{n:012d}"


def _stage(cid, from_stage, to_stage, at, *, historical=False):
    data = {
        "customer_id": cid,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "at": at.isoformat(),
        "cause_event_id": f"sweep:{cid}:{to_stage}:{at.isoformat()}",
        "rule": "recency",
        "rule_version": 1,
        "historical": historical,
    }
    return catalog_event("lifecycle", "crm.lifecycle.stage.changed", data, cid)


def _holdout(seed: str, cid: str, share: float) -> bool:
    # decisions.md's formula, written out again here rather than imported.
    return int.from_bytes(hashlib.sha256(f"{seed}:{cid}".encode()).digest()[:8], "big") / 2**64 < share


async def _profiled(lifecycle, cids) -> None:
    """lifecycle's profiles hold each customer's score and last purchase."""

    async def ready():
        async with lifecycle.runtime.db.reader() as session:
            found = await profiles.of(session, cids)
        return all(
            found.get(c) and found[c]["predicted_clv"] is not None and found[c]["last_purchase_at"] for c in cids
        )

    await wait_until(ready, what="lifecycle's profiles")


async def _create(client, **body) -> dict:
    response = await client.post("/v1/playbooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _entries(client, playbook_id, count):
    async def all_in():
        body = (await client.get(f"/v1/playbooks/{playbook_id}/entries", params={"limit": 200})).json()
        return body["items"] if len(body["items"]) >= count else None

    return await wait_until(all_in, what=f"{count} entries in {playbook_id}")


async def test_playbooks_are_configured_through_the_api_and_bad_input_writes_nothing(suite):
    lifecycle = await start(suite, "lifecycle")
    client = lifecycle.client
    created = await _create(
        client, name="Win back", trigger_stages=["churned"], template_id="tpl-1", outreach_queue=" retention "
    )
    assert created["lookback_days"] == 365 and created["holdout_share"] == 0.1
    assert created["enabled"] is True and created["enabled_at"] is not None
    assert created["outreach_queue"] == "retention" and created["min_predicted_clv"] is None
    assert len(created["seed"]) == 32
    assert (await client.get(f"/v1/playbooks/{created['id']}")).json() == created

    refused = {
        "body": {"name": "Neither", "trigger_stages": ["at_risk"]},  # no offer, no outreach
        "body.trigger_stages.0": {"name": "x", "trigger_stages": ["active"], "outreach_queue": "q"},
        "body.trigger_stages": {"name": "x", "trigger_stages": [], "outreach_queue": "q"},
        "body.holdout_share": {"name": "x", "trigger_stages": ["at_risk"], "outreach_queue": "q", "holdout_share": 0.6},
        "body.lookback_days": {"name": "x", "trigger_stages": ["at_risk"], "outreach_queue": "q", "lookback_days": 0},
        "body.min_predicted_clv": {
            "name": "x",
            "trigger_stages": ["at_risk"],
            "outreach_queue": "q",
            "min_predicted_clv": -1,
        },
        "body.colour": {"name": "x", "trigger_stages": ["at_risk"], "outreach_queue": "q", "colour": "red"},
        "body.enabled": {"name": "x", "trigger_stages": ["at_risk"], "outreach_queue": "q", "enabled": 0},
        "each stage once": {"name": "x", "trigger_stages": ["at_risk", "at_risk"], "outreach_queue": "q"},
    }
    for field, body in refused.items():
        response = await client.post("/v1/playbooks", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["error"] == "validation_error"
        assert field in str(response.json()["detail"]), (field, response.text)

    path = f"/v1/playbooks/{created['id']}"
    # Null where a value is needed is 422; a change leaving neither offer nor outreach 409; nothing written.
    for body, field in (({"name": None}, "body.name"), ({"enabled": None}, "body.enabled")):
        response = await client.patch(path, json=body)
        assert response.status_code == 422, response.text
        assert field in str(response.json()["detail"])
    nothing = await client.patch(path, json={"template_id": None, "outreach_queue": None, "name": "Renamed"})
    assert nothing.status_code == 409 and nothing.json()["error"] == "playbook_does_nothing", nothing.text
    assert (await client.get(path)).json() == created

    changed = await client.patch(path, json={"template_id": None, "min_predicted_clv": 250, "lookback_days": 90})
    assert changed.status_code == 200, changed.text
    assert changed.json()["template_id"] is None and changed.json()["min_predicted_clv"] == 250
    assert changed.json()["enabled_at"] == created["enabled_at"]
    disabled = (await client.patch(path, json={"enabled": False})).json()
    assert disabled["enabled"] is False
    enabled = (await client.patch(path, json={"enabled": True})).json()
    # Enabling again starts the clock again: only transitions from now on fire it.
    assert enabled["enabled_at"] > created["enabled_at"]

    second = await _create(client, name="Retain", trigger_stages=["at_risk", "churned"], template_id="t", seed="s1")
    first_page = (await client.get("/v1/playbooks", params={"limit": 1})).json()
    assert [p["id"] for p in first_page["items"]] == [created["id"]]
    rest = (await client.get("/v1/playbooks", params={"cursor": first_page["next_cursor"]})).json()
    assert [p["id"] for p in rest["items"]] == [second["id"]] and rest["next_cursor"] is None
    assert second["seed"] == "s1"

    for missing in ("/v1/playbooks/nope", "/v1/playbooks/nope/entries"):
        response = await client.get(missing)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert (await client.patch("/v1/playbooks/nope", json={"name": "x"})).status_code == 404
    bad_group = await client.get(f"/v1/playbooks/{created['id']}/entries", params={"group": "other"})
    assert bad_group.status_code == 422


async def test_a_playbook_fires_only_for_recent_qualifying_transitions_and_keeps_its_holdout(suite):
    lifecycle = await start(suite, "lifecycle")
    client = lifecycle.client
    now = datetime.now(UTC)
    good, good2, early, hist, old, low = (_id(n) for n in range(1, 7))
    churners = [_id(n) for n in range(10, 22)]
    recent = now - timedelta(days=30)
    events = [_scored(c, "at_risk", clv=50.0 if c == low else 500.0) for c in [good, good2, early, hist, old, low]]
    events += [_scored(c, "lost", clv=10.0) for c in churners]
    events += [
        _purchase(f"p-{c[-12:]}", c, "20", now - timedelta(days=400) if c == old else recent)
        for c in [good, good2, early, hist, old, low, *churners]
    ]
    await _publish_all(suite.nats.url, events)
    await _profiled(lifecycle, [good, good2, early, hist, old, low, *churners])

    retain = await _create(
        client,
        name="Retain",
        trigger_stages=["at_risk", "churned"],
        min_predicted_clv=100,
        holdout_share=0,
        template_id="tpl-retain",
        outreach_queue="retention",
    )
    win_back = await _create(
        client, name="Win back", trigger_stages=["churned"], holdout_share=0.5, seed="fixed", template_id="tpl-back"
    )
    off = await _create(client, name="Off", trigger_stages=["churned"], template_id="tpl-off", enabled=False)
    enabled_at = datetime.fromisoformat(retain["enabled_at"])
    after = datetime.now(UTC) + timedelta(seconds=1)

    await _publish_all(
        suite.nats.url,
        [
            _stage(early, "active", "at_risk", enabled_at - timedelta(minutes=1)),  # before it was enabled
            _stage(hist, "active", "at_risk", after, historical=True),  # imported history
            _stage(old, "active", "at_risk", after),  # last purchase 400 days ago: outside the look-back
            _stage(low, "active", "at_risk", after),  # predicted CLV 50, under 100
            _stage(good, "active", "at_risk", after),  # fires
            _stage(good, "at_risk", "churned", after + timedelta(days=1)),  # the same episode: not again
            *[_stage(c, "at_risk", "churned", after) for c in churners],
        ],
    )
    win_back_entries = await _entries(client, win_back["id"], 13)  # the churners, and good (churned)
    # One holdout customer churns again later: a new entry, in the holdout again.
    again = next(c for c in churners if _holdout("fixed", c, 0.5))
    await _publish_all(
        suite.nats.url,
        [
            _stage(again, "churned", "won_back", after + timedelta(days=2)),
            _stage(again, "won_back", "churned", after + timedelta(days=3)),
            _stage(good2, "active", "at_risk", after + timedelta(days=3)),  # the last one: all before it were read
        ],
    )
    retain_entries = await _entries(client, retain["id"], 2)
    assert [(e["customer_id"], e["group"], e["stage"]) for e in retain_entries] == [
        (good, "treatment", "at_risk"),
        (good2, "treatment", "at_risk"),
    ]
    assert retain_entries[0]["template_id"] == "tpl-retain" and retain_entries[0]["outreach_queue"] == "retention"
    assert datetime.fromisoformat(retain_entries[0]["entered_at"]) == after

    win_back_entries = await _entries(client, win_back["id"], 14)
    assert len(win_back_entries) == 14
    groups = {(e["customer_id"], e["group"]) for e in win_back_entries}
    assert groups == {(c, "holdout" if _holdout("fixed", c, 0.5) else "treatment") for c in [*churners, good]}
    assert 0 < sum(g == "holdout" for _, g in groups) < 13
    assert [e["group"] for e in win_back_entries if e["customer_id"] == again] == ["holdout", "holdout"]
    for entry in win_back_entries:
        assert (entry["template_id"] == "tpl-back") == (entry["group"] == "treatment")
    holdout_page = (await client.get(f"/v1/playbooks/{win_back['id']}/entries", params={"group": "holdout"})).json()
    assert {e["customer_id"] for e in holdout_page["items"]} == {c for c, g in groups if g == "holdout"}
    assert (await client.get(f"/v1/playbooks/{off['id']}/entries")).json()["items"] == []

    # A customer's own list, newest first, in pages; one lifecycle knows with none is empty; a stranger 404.
    mine = (await client.get(f"/v1/customers/{again}/playbooks", params={"limit": 1})).json()
    rest = (await client.get(f"/v1/customers/{again}/playbooks", params={"cursor": mine["next_cursor"]})).json()
    assert [e["id"] for e in mine["items"] + rest["items"]] == sorted(
        (e["id"] for e in win_back_entries if e["customer_id"] == again), reverse=True
    )
    assert rest["next_cursor"] is None
    assert (await client.get(f"/v1/customers/{early}/playbooks")).json()["items"] == []
    stranger = await client.get("/v1/customers/nobody/playbooks")
    assert stranger.status_code == 404 and stranger.json()["error"] == "not_found"

    # The bus: every entry announced; offers asked for the treatment group only, never the holdout.
    treated = [e for e in win_back_entries if e["group"] == "treatment"]
    entered = await _read_stream(suite.nats.url, "crm.lifecycle.playbook.entered", 16, settle=True)
    asked = await _read_stream(suite.nats.url, "crm.lifecycle.playbook.offer_requested", 2 + len(treated), settle=True)
    by_playbook = {e["data"]["playbook_id"] for e in entered}
    assert by_playbook == {retain["id"], win_back["id"]}
    first = next(e["data"] for e in entered if e["data"]["playbook_id"] == retain["id"])
    assert first == {
        "playbook_id": retain["id"],
        "customer_id": good,
        "group": "treatment",
        "entered_at": first["entered_at"],
        "outreach": True,
        "outreach_queue": "retention",
        "outreach_assignee_id": None,
        "stage": "at_risk",
        "playbook_name": "Retain",
    }
    assert not any(e["data"]["outreach"] for e in entered if e["data"]["playbook_id"] == win_back["id"])
    holdouts = {c for c, g in groups if g == "holdout"}
    assert not {a["data"]["customer_id"] for a in asked if a["data"]["playbook_id"] == win_back["id"]} & holdouts
    assert {a["data"]["request_id"] for a in asked} == {e["id"] for e in [*retain_entries, *treated]}
    assert {a["data"]["template_id"] for a in asked} == {"tpl-retain", "tpl-back"}


async def test_value_issues_a_playbook_offer_and_reports_the_win_back(suite):
    lifecycle = await start(suite, "lifecycle")
    value = await start(suite, "value")
    now = datetime.now(UTC)
    customers = [_id(n) for n in range(30, 38)]
    events = [
        catalog_event("identify", "crm.identify.customer.created", {"id": c, "created_at": "2026-01-01T00:00:00Z"}, c)
        for c in customers
    ]
    events += [_scored(c, "at_risk", clv=300.0) for c in customers]
    events += [_purchase(f"first-{c[-12:]}", c, "40", now - timedelta(days=90)) for c in customers]
    await _publish_all(suite.nats.url, events)
    await _profiled(lifecycle, customers)
    await _known(value, customers)
    template = await _template(
        value, kind="amount_off", percent_off=None, amount_off={"amount": "5", "currency": "USD"}
    )
    playbook = await _create(
        lifecycle.client,
        name="Retain",
        trigger_stages=["at_risk"],
        holdout_share=0.25,
        seed="e2e",
        template_id=template["id"],
    )
    entered_at = datetime.now(UTC) + timedelta(seconds=1)
    await _publish_all(suite.nats.url, [_stage(c, "active", "at_risk", entered_at) for c in customers])
    entries = await _entries(lifecycle.client, playbook["id"], len(customers))
    treatment = [e["customer_id"] for e in entries if e["group"] == "treatment"]
    holdout = [e["customer_id"] for e in entries if e["group"] == "holdout"]
    assert treatment and holdout

    async def offered():
        found = {}
        for c in customers:
            items = (await value.client.get("/v1/offers", params={"customer_id": c})).json()["items"]
            found[c] = [o for o in items if o["playbook_id"] == playbook["id"]]
        return found if all(found[c] for c in treatment) else None

    # (value's welcome offers on the customers' creation are not the playbook's.)
    offers = await wait_until(offered, what="value's offers to the treatment group")
    assert all(len(offers[c]) == 1 and offers[c][0]["amount_off"] == "5" for c in treatment)
    assert all(offers[c] == [] for c in holdout)

    # A treatment customer and a holdout customer buy again after entering: won back.
    back = [treatment[0], holdout[0]]
    await _publish_all(
        suite.nats.url, [_purchase(f"again-{c[-12:]}", c, "60", entered_at + timedelta(days=1)) for c in back]
    )

    async def measured():
        response = await value.client.get(f"/v1/playbooks/{playbook['id']}/results")
        body = response.json()
        done = response.status_code == 200 and body["treatment"]["converted"] + body["holdout"]["converted"] == 2
        return body if done and body["holdout"]["customers"] == len(holdout) else None

    results = await wait_until(measured, what="the playbook's results")
    assert results["treatment"]["customers"] == len(treatment) and results["treatment"]["converted"] == 1
    assert results["treatment"]["revenue"] == 60.0 and results["holdout"]["revenue"] == 60.0
    assert results["treatment"]["conversion_rate"]["value"] == 1 / len(treatment)
    assert results["uplift"]["conversion"]["value"] == 1 / len(treatment) - 1 / len(holdout)
