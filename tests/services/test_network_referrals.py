"""The referral programme against a real nats-server and real databases: identify's referral
codes, network's attribution (pending → qualified → rewarded, or void), value's reward, once."""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import select

from services.value.referrals.models import ReferralReward
from shared.db.migrations import upgrade
from shared.events.envelope import make_event
from tests.services.test_engage import catalog_event, create_customer, publish
from tests.services.test_network import start, stream_events
from tests.services.test_value_campaigns import _template
from tests.support import wait_until

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")  # Crockford base32: no I, L, O, U


async def _json_when(client, path: str, predicate, what: str, **params):
    async def check():
        response = await client.get(path, params=params)
        return response.json() if response.status_code == 200 and predicate(response.json()) else None

    return await wait_until(check, what=what)


async def _buy(identify, customer_id: str, amount: str = "40.00") -> dict:
    response = await identify.client.post(
        "/v1/transactions",
        json={"customer_id": customer_id, "amount": amount, "currency": "USD", "occurred_at": "2026-11-01T10:00:00Z"},
    )
    assert response.status_code == 201, response.text
    return response.json()


# --- identify: codes ---------------------------------------------------------------------------


async def test_each_customer_gets_a_code_that_resolves_at_signup_into_referred_by(suite):
    identify = await start(suite, "identify")
    ada = await create_customer(identify, email="ada@example.com")
    zed = await create_customer(identify, email="zed@example.com")
    assert CODE.match(ada["referral_code"]) and CODE.match(zed["referral_code"])
    assert ada["referral_code"] != zed["referral_code"]
    assert (await identify.client.get(f"/v1/customers/{ada['id']}")).json()["referral_code"] == ada["referral_code"]

    # Typed as people type it: lower case, a dash, O for 0 and L for 1.
    typed = ada["referral_code"].lower().replace("0", "o").replace("1", "l")
    bob = await create_customer(identify, email="bob@example.com", referral_code=f"{typed[:4]}-{typed[4:]}")
    assert bob["referred_by"] == ada["id"]
    # Both, agreeing: fine.
    cy = await create_customer(
        identify, email="cy@example.com", referred_by=ada["id"], referral_code=ada["referral_code"]
    )
    assert cy["referred_by"] == ada["id"]

    # An unknown code, and a code of another customer than referred_by: 422 naming the code, nothing written.
    for body in (
        {"referral_code": "ZZZZZZZZ" if ada["referral_code"] != "ZZZZZZZZ" else "YYYYYYYY"},
        {"referral_code": "not a code at all"},
        {"referred_by": zed["id"], "referral_code": ada["referral_code"]},
    ):
        refused = await identify.client.post("/v1/customers", json={"email": "dee@example.com", **body})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        assert "body.referral_code" in refused.text
    dee = await create_customer(identify, email="dee@example.com")  # the email was never taken
    assert dee["referred_by"] is None

    # identify announces each customer's code with its creation.
    async def created():
        events = await stream_events(suite.nats.url, "crm.identify.customer.created")
        return events if len(events) >= 5 else None

    codes = {e["data"]["id"]: e["data"]["referral_code"] for e in await wait_until(created, what="the created events")}
    assert codes[ada["id"]] == ada["referral_code"] and codes[bob["id"]] == bob["referral_code"]


def test_customers_from_before_the_codes_get_one_by_migration(tmp_path):
    """Revision a7acb6dde8bd draws a code for each customer already there, but an erased one."""

    url = f"sqlite+aiosqlite:///{tmp_path / 'identify.db'}"
    upgrade("identify", url, "a7246de2b25b")
    with sqlite3.connect(tmp_path / "identify.db") as db:
        for cid, erased in (("old-1", None), ("old-2", None), ("gone", "2026-02-01 00:00:00")):
            db.execute(
                "INSERT INTO customers (id, external_id, purchase_count, created_at, updated_at, erased_at) "
                "VALUES (?, ?, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', ?)",
                (cid, cid, erased),
            )
    upgrade("identify", url)
    with sqlite3.connect(tmp_path / "identify.db") as db:
        codes = dict(db.execute("SELECT id, referral_code FROM customers").fetchall())
        triggers = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert CODE.match(codes["old-1"]) and CODE.match(codes["old-2"]) and codes["old-1"] != codes["old-2"]
    assert codes["gone"] is None
    assert {"customer_search_update", "customer_search_delete"} <= triggers  # no table rebuilt


async def test_a_merged_customers_code_refers_to_the_survivor(suite):
    identify = await start(suite, "identify")
    ada = await create_customer(identify, email="ada@example.com")
    ada2 = await create_customer(identify, email="ada.two@example.com")
    merged = await identify.client.post(f"/v1/customers/{ada['id']}/merge", json={"merge": [ada2["id"]]})
    assert merged.status_code == 200, merged.text
    bob = await create_customer(identify, email="bob@example.com", referral_code=ada2["referral_code"])
    assert bob["referred_by"] == ada["id"]


# --- network: attribution ------------------------------------------------------------------------


async def test_a_first_purchase_within_the_window_rewards_the_referrer_once(suite):
    identify = await start(suite, "identify")
    network = await start(suite, "network")
    value = await start(suite, "value")

    default = await network.client.get("/v1/referral-programme")
    assert default.json() == {"window_days": 90, "reward_template_id": None, "reward_points": None, "updated_at": None}
    terms = await network.client.put("/v1/referral-programme", json={"window_days": 30, "reward_points": 500})
    assert terms.status_code == 200, terms.text
    for bad, field in (
        ({"window_days": 0}, "window_days"),
        ({"window_days": 30, "reward_points": 5, "reward_template_id": "t"}, "body"),
        ({"window_days": 30, "reward": 5}, "reward"),
    ):
        refused = await network.client.put("/v1/referral-programme", json=bad)
        assert refused.status_code == 422 and field in refused.text, refused.text
    assert (await network.client.get("/v1/referral-programme")).json()["reward_points"] == 500

    ada = await create_customer(identify, email="ada@example.com")
    bob = await create_customer(identify, email="bob@example.com", referral_code=ada["referral_code"])
    pending = await _json_when(
        network.client, f"/v1/customers/{ada['id']}/referrals", lambda b: len(b["items"]) == 1, "Bob's referral"
    )
    [referral] = pending["items"]
    assert referral["status"] == "pending" and referral["reward"] is None
    assert referral["referrer_id"] == ada["id"] and referral["referred_id"] == bob["id"]
    assert referral["qualifies_until"] is not None

    first = await _buy(identify, bob["id"])
    await _buy(identify, bob["id"], "15.00")  # a second purchase changes nothing
    rewarded = await _json_when(
        network.client,
        f"/v1/customers/{ada['id']}/referrals",
        lambda b: b["items"][0]["status"] == "rewarded",
        "the referral rewarded",
    )
    [referral] = rewarded["items"]
    assert referral["transaction_id"] == first["id"]
    assert referral["reward"] == {"template_id": None, "points": 500}
    listed = await network.client.get("/v1/referrals", params={"status": "rewarded"})
    assert [r["id"] for r in listed.json()["items"]] == [referral["id"]]
    assert (await network.client.get("/v1/referrals", params={"status": "pending"})).json()["items"] == []
    assert (await network.client.get("/v1/referrals", params={"status": "gone"})).status_code == 422

    async def rewarded_events():
        events = await stream_events(suite.nats.url, "crm.network.referral.rewarded")
        return events or None

    [event] = await wait_until(rewarded_events, what="crm.network.referral.rewarded")
    assert event["subject"] == ada["id"]
    assert event["data"] == {
        "referral_id": referral["id"],
        "referrer_id": ada["id"],
        "referred_id": bob["id"],
        "template_id": None,
        "points": 500,
        "transaction_id": first["id"],
        "rewarded_at": event["data"]["rewarded_at"],
    }

    # value issues Ada an offer of 500 points (lifecycle's ledger credits them), naming the referral.
    offers = await _json_when(
        value.client, f"/v1/customers/{ada['id']}/offers", lambda b: len(b["items"]) == 1, "Ada's reward"
    )
    [offer] = offers["items"]
    assert offer["kind"] == "points" and offer["points"] == 500

    async def issued():
        found = [
            e
            for e in await stream_events(suite.nats.url, "crm.value.offer.issued")
            if e["data"]["customer_id"] == ada["id"]
        ]
        return found or None

    [issued_event] = await wait_until(issued, what="the reward's offer.issued")
    assert issued_event["data"]["referral_id"] == referral["id"] and issued_event["data"]["points"] == 500

    # The same announcement again (redelivered past JetStream's duplicate window, under a new
    # event id): still one reward.
    again = make_event(
        service="network", type=event["type"], data=event["data"], subject=event["subject"], dataschema=None
    )
    await publish(suite.nats.url, again, again.id)
    marker = await create_customer(identify, email="marker@example.com")
    await _json_when(value.client, f"/v1/customers/{marker['id']}/offers", lambda b: True, "value past the replay")
    await _json_when(
        value.client,
        f"/v1/customers/{ada['id']}/offers",
        lambda b: len(b["items"]) == 1,
        "still one reward",
    )
    assert len((await value.client.get(f"/v1/customers/{ada['id']}/offers")).json()["items"]) == 1


async def test_a_purchase_after_the_window_voids_and_a_programme_without_reward_qualifies(suite):
    network = await start(suite, "network")
    await network.client.put("/v1/referral-programme", json={"window_days": 10})

    def created(cid: str, at: str, referred_by: str | None = None):
        data = {"id": cid, "email": f"{cid}@example.com", "referred_by": referred_by, "created_at": at}
        return catalog_event("identify", "crm.identify.customer.created", data, cid)

    def purchase(tid: str, cid: str, at: str):
        data = {
            "id": tid,
            "customer_id": cid,
            "amount": "20",
            "currency": "EUR",
            "occurred_at": at,
            "purchase_count": 1,
        }
        return catalog_event("identify", "crm.identify.transaction.recorded", data, cid)

    events = [
        created("ref", "2026-01-01T00:00:00Z"),
        created("late", "2026-02-01T00:00:00Z", "ref"),
        created("soon", "2026-02-01T00:00:00Z", "ref"),
        purchase("t-late", "late", "2026-02-12T00:00:00Z"),  # 11 days: past the 10-day window
        purchase("t-soon", "soon", "2026-02-10T00:00:00Z"),  # 9 days: within it
        purchase("t-soon-2", "soon", "2026-02-11T00:00:00Z"),
    ]
    for event in events:
        await publish(suite.nats.url, event, event.id)
    body = await _json_when(
        network.client,
        "/v1/referrals",
        lambda b: len(b["items"]) == 2 and all(r["status"] != "pending" for r in b["items"]),
        "both referrals judged",
    )
    by_referred = {r["referred_id"]: r for r in body["items"]}
    assert by_referred["late"]["status"] == "void" and by_referred["late"]["void_reason"] == "window_passed"
    assert by_referred["late"]["transaction_id"] == "t-late"
    assert by_referred["late"]["qualifies_until"].startswith("2026-02-11T00:00:00")
    assert by_referred["soon"]["status"] == "qualified" and by_referred["soon"]["transaction_id"] == "t-soon"
    assert by_referred["soon"]["reward"] is None
    assert await stream_events(suite.nats.url, "crm.network.referral.rewarded") == []
    filtered = await network.client.get("/v1/referrals", params={"referred_id": "late"})
    assert [r["referred_id"] for r in filtered.json()["items"]] == ["late"]


async def test_a_merge_voids_a_self_referral_and_a_second_referral_of_one_person(suite):
    network = await start(suite, "network")

    def created(cid: str, referred_by: str | None = None):
        data = {
            "id": cid,
            "email": f"{cid}@example.com",
            "referred_by": referred_by,
            "created_at": "2026-03-01T00:00:00Z",
        }
        return catalog_event("identify", "crm.identify.customer.created", data, cid)

    def merged(survivor: str, merged_ids: list[str]):
        data = {"survivor_id": survivor, "merged_ids": merged_ids, "merged_at": "2026-03-02T00:00:00Z"}
        return catalog_event("identify", "crm.identify.customer.merged", data, survivor)

    for event in (
        created("ana"),
        created("eve"),
        created("bea", "ana"),  # bea is ana's second account: the merge makes it a self-referral
        created("cal", "ana"),
        created("dan", "eve"),  # dan is cal: referred twice, one referral stands
    ):
        await publish(suite.nats.url, event, event.id)
    # Recorded first (a creation network reads after the merge already names the survivor: such a
    # referral is refused at once, never recorded).
    await _json_when(network.client, "/v1/referrals", lambda b: len(b["items"]) == 3, "three referrals")
    for event in (merged("ana", ["bea"]), merged("cal", ["dan"])):
        await publish(suite.nats.url, event, event.id)
    body = await _json_when(
        network.client,
        "/v1/referrals",
        lambda b: sum(r["status"] == "void" for r in b["items"]) == 2,
        "the merges followed",
    )
    by_referred = {r["referred_id"]: r for r in body["items"]}
    assert by_referred["bea"]["status"] == "void" and by_referred["bea"]["void_reason"] == "self_referral"
    assert by_referred["bea"]["referrer_id"] == "ana"
    assert by_referred["cal"]["status"] == "pending" and by_referred["cal"]["referrer_id"] == "ana"
    assert by_referred["dan"]["status"] == "void" and by_referred["dan"]["void_reason"] == "already_referred"
    assert by_referred["dan"]["referrer_id"] == "eve"
    # ana's list shows both: the one standing and the one the merge voided, with why.
    anas = (await network.client.get("/v1/customers/ana/referrals")).json()["items"]
    assert {(r["referred_id"], r["status"]) for r in anas} == {("bea", "void"), ("cal", "pending")}


# --- value: the reward, once ---------------------------------------------------------------------


async def test_value_issues_a_template_reward_once_per_referral_and_keeps_why_it_could_not(suite):
    value = await start(suite, "value")
    tpl = await _template(value, title="Thanks for the referral", per_customer_cap=1)

    def rewarded(referral_id: str, referrer: str, template_id: str):
        data = {
            "referral_id": referral_id,
            "referrer_id": referrer,
            "referred_id": f"{referral_id}-friend",
            "template_id": template_id,
            "transaction_id": f"{referral_id}-t",
            "rewarded_at": "2026-04-01T00:00:00Z",
        }
        return catalog_event("network", "crm.network.referral.rewarded", data, referrer)

    first = rewarded("r1", "ada", tpl["id"])
    for event in (
        first,
        catalog_event("network", first.type, first.data, first.subject),  # the same referral, a new event id
        rewarded("r2", "ada", tpl["id"]),  # Ada's cap is 1: nothing issued
        rewarded("r3", "ada", "no-such-template"),
    ):
        await publish(suite.nats.url, event, event.id)

    async def issued():
        events = await stream_events(suite.nats.url, "crm.value.offer.issued")
        return events or None

    [offer] = await wait_until(issued, what="the reward offer")
    assert offer["data"]["customer_id"] == "ada"
    assert offer["data"]["template_id"] == tpl["id"] and offer["data"]["referral_id"] == "r1"
    template = await _json_when(value.client, f"/v1/offer-templates/{tpl['id']}", lambda b: b["issued"] == 1, "issued")
    assert template["issued"] == 1

    # The refused ones are kept with their reason (value's own table), and nothing more was issued.
    async def outcomes():
        async with value.runtime.db.reader() as session:
            rows = (await session.execute(select(ReferralReward.referral_id, ReferralReward.outcome))).all()
        return dict(rows) if len(rows) == 3 else None

    assert await wait_until(outcomes, what="three rewards judged") == {
        "r1": "issued",
        "r2": "customer_cap",
        "r3": "unknown_template",
    }
    assert len(await stream_events(suite.nats.url, "crm.value.offer.issued")) == 1
