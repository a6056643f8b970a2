"""network's stakeholders and their relations to customers (issue 16 §4) against a real
nats-server and real databases: typed stakeholders, relations with every period kept, a
customer's network, a stakeholder's customers with their revenue and CLV (from identify's
events, crafted on the real bus as tests/services/test_value_campaigns.py does), partner
performance, and lifecycle giving a playbook's outreach ticket to the account manager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.lifecycle.playbooks import repository as playbooks_repository
from tests.services.test_engage import catalog_event
from tests.services.test_lifecycle import _read_stream
from tests.services.test_lifecycle_playbooks import _create as _create_playbook
from tests.services.test_lifecycle_playbooks import _stage
from tests.services.test_network import start
from tests.services.test_network_partners import as_partner
from tests.services.test_value_campaigns import _correction, _created, _publish_all, _purchase, _scored
from tests.support import wait_until

ADMIN = {"x-valuechain-actor": "key_admin", "x-valuechain-role": "admin"}


def _id(n: int) -> str:
    return f"00000000-0000-7000-a000-{n:012d}"


async def _stakeholder(client, kind: str, name: str, **more) -> dict:
    response = await client.post("/v1/stakeholders", json={"kind": kind, "name": name, **more})
    assert response.status_code == 201, response.text
    return response.json()


async def _known(network, cids) -> None:
    async def known():
        for cid in cids:
            if (await network.client.get(f"/v1/customers/{cid}/network")).status_code != 200:
                return False
        return True

    await wait_until(known, what="network knows the customers")


async def _relate(client, cid: str, stakeholder_id: str, relation: str, **more) -> dict:
    response = await client.post(
        f"/v1/customers/{cid}/relations",
        json={"stakeholder_id": stakeholder_id, "relation": relation, **more},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return response.json()


# --- stakeholders -------------------------------------------------------------------------


async def test_stakeholders_of_every_kind_are_changed_searched_and_announced(suite):
    network = await start(suite, "network")
    client = network.client
    made = {
        kind: await _stakeholder(client, kind, name)
        for kind, name in [
            ("reseller", "Nordic Resale"),
            ("owner", "Olga Owner"),
            ("partner", "100% Partners"),
            ("employee", "Dana Smith"),
        ]
    }
    owner = made["owner"]
    assert owner["kind"] == "owner" and owner["updated_at"] is None

    patched = await client.patch(
        f"/v1/stakeholders/{owner['id']}",
        json={"name": " Olga Berg ", "email": "olga@example.com", "notes": "Founder\nbuys rarely"},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["email"], body["notes"], body["kind"]) == (
        "Olga Berg",
        "olga@example.com",
        "Founder\nbuys rarely",
        "owner",
    )
    assert body["updated_at"] is not None and body["created_at"] == owner["created_at"]
    assert (await client.get(f"/v1/stakeholders/{owner['id']}")).json() == body
    cleared = (await client.patch(f"/v1/stakeholders/{owner['id']}", json={"email": None})).json()
    assert cleared["email"] is None and cleared["name"] == "Olga Berg"
    # The same values again change nothing and announce nothing.
    assert (await client.patch(f"/v1/stakeholders/{owner['id']}", json={"email": None})).json() == cleared
    assert (await client.patch(f"/v1/stakeholders/{owner['id']}", json={})).json() == cleared

    for bad, field in [
        ({"name": None}, "body.name"),
        ({"name": "  "}, "body.name"),
        ({"kind": "partner"}, "body.kind"),
        ({"email": "not an email"}, "body.email"),
    ]:
        refused = await client.patch(f"/v1/stakeholders/{owner['id']}", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert field in refused.text, refused.text
    missing = await client.patch(f"/v1/stakeholders/{_id(999)}", json={"name": "X"})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    # Search by name, any case; `%` and `_` are letters, not wildcards; with a kind.
    found = (await client.get("/v1/stakeholders", params={"q": "SMITH"})).json()["items"]
    assert [s["name"] for s in found] == ["Dana Smith"]
    assert [s["name"] for s in (await client.get("/v1/stakeholders", params={"q": "0%"})).json()["items"]] == [
        "100% Partners"
    ]
    assert (await client.get("/v1/stakeholders", params={"q": "_"})).json()["items"] == []
    both = (await client.get("/v1/stakeholders", params={"q": "o", "kind": "reseller"})).json()["items"]
    assert [s["name"] for s in both] == ["Nordic Resale"]
    assert (await client.get("/v1/stakeholders", params={"q": ""})).status_code == 422

    created = await _read_stream(suite.nats.url, "crm.network.stakeholder.created", 4, settle=True)
    assert {e["data"]["kind"] for e in created} == {"reseller", "owner", "partner", "employee"}
    updated = await _read_stream(suite.nats.url, "crm.network.stakeholder.updated", 2, settle=True)
    assert [e["data"]["changed"] for e in updated] == [["email", "name", "notes"], ["email"]]
    assert updated[0]["data"]["name"] == "Olga Berg" and updated[1]["data"]["email"] is None


# --- relations ---------------------------------------------------------------------------------


async def test_relations_keep_every_period_and_one_account_manager(suite):
    network = await start(suite, "network")
    client = network.client
    cid, other = _id(1), _id(2)
    await _publish_all(suite.nats.url, [_created(cid), _created(other)])
    await _known(network, [cid, other])
    empty = (await client.get(f"/v1/customers/{cid}/network")).json()
    assert empty == {"customer_id": cid, "at": None, "current": [], "history": []}

    ann = await _stakeholder(client, "employee", "Ann")
    bob = await _stakeholder(client, "employee", "Bob")
    acme = await _stakeholder(client, "partner", "Acme")
    fjord = await _stakeholder(client, "supplier", "Fjord")
    retail = await _stakeholder(client, "reseller", "Retail")

    first = await _relate(client, cid, ann["id"], "account_manager_of", started_at="2026-01-01T00:00:00Z")
    assert first["started_by"] == "key_admin" and first["ended_at"] is None
    assert first["stakeholder_kind"] == "employee"

    # Bad input: the kind must fit the relation, the stakeholder and customer must exist; nothing written.
    refusals = [
        ({"stakeholder_id": acme["id"], "relation": "account_manager_of"}, 422, "body.relation"),
        ({"stakeholder_id": ann["id"], "relation": "supplier_to"}, 422, "body.relation"),
        ({"stakeholder_id": fjord["id"], "relation": "reseller_of"}, 422, "body.relation"),
        ({"stakeholder_id": _id(999), "relation": "introduced"}, 422, "body.stakeholder_id"),
        ({"stakeholder_id": acme["id"], "relation": "friend_of"}, 422, "body.relation"),
        ({"stakeholder_id": acme["id"], "relation": "introduced", "started_at": "2999-01-01T00:00:00Z"}, 422, None),
        ({"stakeholder_id": acme["id"], "relation": "introduced", "started_at": "2026-01-01T00:00:00"}, 422, None),
        ({"stakeholder_id": acme["id"], "relation": "introduced", "extra": 1}, 422, "body.extra"),
        ({"stakeholder_id": ann["id"], "relation": "account_manager_of"}, 409, "relation_current"),
    ]
    for body, status, text in refusals:
        response = await client.post(f"/v1/customers/{cid}/relations", json=body)
        assert response.status_code == status, (body, response.text)
        assert text is None or text in response.text, response.text
    unknown = await client.post(
        f"/v1/customers/{_id(998)}/relations", json={"stakeholder_id": acme["id"], "relation": "introduced"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"

    # Another account manager ends the first one (replaced); both stay in the history.
    second = await _relate(client, cid, bob["id"], "account_manager_of", started_at="2026-03-01T00:00:00Z")
    resale = await _relate(client, cid, acme["id"], "reseller_of", started_at="2026-01-15T00:00:00Z")
    await _relate(client, cid, retail["id"], "reseller_of")
    introduced = await _relate(client, cid, acme["id"], "introduced", started_at="2025-12-01T00:00:00Z")
    supply = await _relate(client, cid, fjord["id"], "supplier_to", started_at="2026-02-01T00:00:00Z")
    # The same account manager on another customer is fine.
    await _relate(client, other, bob["id"], "account_manager_of")

    ended = await client.delete(f"/v1/customers/{cid}/relations/{supply['id']}", headers=ADMIN)
    assert ended.status_code == 200, ended.text
    assert ended.json()["ended_reason"] == "ended" and ended.json()["ended_by"] == "key_admin"
    again = await client.delete(f"/v1/customers/{cid}/relations/{supply['id']}")
    assert again.status_code == 409 and again.json()["error"] == "relation_ended"
    assert (await client.delete(f"/v1/customers/{other}/relations/{supply['id']}")).status_code == 404
    resupply = await _relate(client, cid, fjord["id"], "supplier_to")  # a new period

    net = (await client.get(f"/v1/customers/{cid}/network")).json()
    assert [(r["relation"], r["stakeholder"]["name"]) for r in net["current"]] == [
        ("introduced", "Acme"),
        ("reseller_of", "Acme"),
        ("account_manager_of", "Bob"),
        ("reseller_of", "Retail"),
        ("supplier_to", "Fjord"),
    ]
    history = {r["id"]: r for r in net["history"]}
    assert len(history) == 7 and resupply["id"] in history
    assert history[first["id"]]["ended_reason"] == "replaced"
    assert history[first["id"]]["ended_at"] == second["started_at"]
    assert history[supply["id"]]["ended_at"] is not None
    started = [r["started_at"] for r in net["history"]]
    assert started == sorted(started, reverse=True)

    # As it was on 2026-02-15: Ann managed, Fjord supplied, Acme introduced and resold.
    then = (await client.get(f"/v1/customers/{cid}/network", params={"at": "2026-02-15T00:00:00Z"})).json()
    assert [(r["relation"], r["stakeholder_id"]) for r in then["current"]] == [
        ("introduced", acme["id"]),
        ("account_manager_of", ann["id"]),
        ("reseller_of", acme["id"]),
        ("supplier_to", fjord["id"]),
    ]
    assert (await client.get(f"/v1/customers/{cid}/network", params={"at": "2026-02-15"})).status_code == 422

    # Every period, in pages.
    page = (await client.get(f"/v1/customers/{cid}/relations", params={"limit": 4})).json()
    rest = (await client.get(f"/v1/customers/{cid}/relations", params={"cursor": page["next_cursor"]})).json()
    assert {r["id"] for r in page["items"] + rest["items"]} == set(history) and rest["next_cursor"] is None
    assert (await client.get(f"/v1/customers/{_id(998)}/network")).status_code == 404

    # A partner sees its own relations with the customer only, and none of a customer it has none with.
    mine = (await client.get(f"/v1/customers/{cid}/network", headers=as_partner(acme["id"]))).json()
    assert {r["id"] for r in mine["history"]} == {resale["id"], introduced["id"]}
    hidden = await client.get(f"/v1/customers/{other}/network", headers=as_partner(acme["id"]))
    assert hidden.status_code == 404
    assert (await client.get(f"/v1/customers/{other}/relations", headers=as_partner(acme["id"]))).status_code == 404

    # The bus: 8 starts, 2 ends (replaced, ended), none for the refused writes; on the customer's subject.
    starts = await _read_stream(suite.nats.url, "crm.network.relation.started", 8, settle=True)
    ends = await _read_stream(suite.nats.url, "crm.network.relation.ended", 2, settle=True)
    assert [e["data"]["reason"] for e in ends] == ["replaced", "ended"]
    assert ends[0]["data"] | {"ended_at": None} == {
        "relation_id": first["id"],
        "customer_id": cid,
        "stakeholder_id": ann["id"],
        "stakeholder_kind": "employee",
        "relation": "account_manager_of",
        "started_at": "2026-01-01T00:00:00Z",
        "changed_by": "key_admin",
        "ended_at": None,
        "reason": "replaced",
    }
    assert {e["subject"] for e in starts} == {cid, other}


# --- a stakeholder's customers and partner performance -------------------------------------------


async def test_a_stakeholders_customers_come_with_revenue_and_clv_and_partners_are_ranked(suite):
    network = await start(suite, "network")
    client = network.client
    now = datetime.now(UTC)
    c1, c2, c3, c4 = _id(11), _id(12), _id(13), _id(14)
    events = [_created(c) for c in (c1, c2, c3, c4)]
    events += [
        _purchase("t1", c1, "100", now - timedelta(days=10)),
        _purchase("t2", c1, "50", now - timedelta(days=5)),
        _correction("refunded", "t2", c1, "20", now - timedelta(days=4)),
        _purchase("t3", c2, "200", now - timedelta(days=3)),
        _correction("voided", "t3", c2, "200", now - timedelta(days=2)),
        _purchase("t4", c2, "30", now - timedelta(days=800)),
        _purchase("t5", c3, "10", now - timedelta(days=700)),
        _purchase("t6", c4, "999", now - timedelta(days=1)),
        _scored(c1, "champions", clv=500.0),
        _scored(c3, "hibernating", clv=50.0),
    ]
    await _publish_all(suite.nats.url, events)
    await _known(network, [c1, c2, c3, c4])
    acme = await _stakeholder(client, "partner", "Acme")
    bolt = await _stakeholder(client, "partner", "Bolt")
    await _stakeholder(client, "partner", "Idle")
    fjord = await _stakeholder(client, "supplier", "Fjord")
    r1 = await _relate(client, c1, acme["id"], "reseller_of")
    await _relate(client, c1, acme["id"], "introduced")  # one customer, counted once
    r2 = await _relate(client, c2, acme["id"], "introduced")
    await _relate(client, c3, bolt["id"], "reseller_of")
    await _relate(client, c4, fjord["id"], "supplier_to")

    async def acme_customers(**params):
        response = await client.get(f"/v1/stakeholders/{acme['id']}/customers", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def all_counted():
        body = await acme_customers()
        return body if body["revenue"] == 160.0 and body["predicted_clv"] == 500.0 else None

    body = await wait_until(all_counted, what="network to count the purchases, refund, void and scores")
    assert (body["customers"], body["active_customers"]) == (2, 1)
    by_relation = {item["relation_id"]: item for item in body["items"]}
    assert len(by_relation) == 3
    assert by_relation[r1["id"]] | {"last_purchase_at": None} == {
        "relation_id": r1["id"],
        "customer_id": c1,
        "relation": "reseller_of",
        "current": True,
        "started_at": r1["started_at"],
        "ended_at": None,
        "revenue": 130.0,  # 100 + 50 - 20 refunded
        "purchases": 2,
        "last_purchase_at": None,
        "active": True,
        "predicted_clv": 500.0,
        "segment": "champions",
    }
    # The void takes the purchase out; the one left is old: not active; not scored yet.
    c2_item = by_relation[r2["id"]]
    assert (c2_item["revenue"], c2_item["purchases"], c2_item["active"]) == (30.0, 1, False)
    assert c2_item["predicted_clv"] is None and c2_item["segment"] is None
    first = await acme_customers(limit=2)
    rest = await acme_customers(cursor=first["next_cursor"])
    assert [i["relation_id"] for i in first["items"] + rest["items"]] == sorted(by_relation)

    # Ranked by revenue: Acme 160, Bolt 10, Idle 0 (no customers); a supplier is not a partner.
    ranked = (await client.get("/v1/stakeholders/performance", params={"kind": "partner"})).json()
    assert [(p["name"], p["customers"], p["active_customers"], p["revenue"]) for p in ranked["items"]] == [
        ("Acme", 2, 1, 160.0),
        ("Bolt", 1, 0, 10.0),
        ("Idle", 0, 0, 0.0),
    ]
    assert ranked["items"][0]["retention"] == 0.5 and ranked["items"][0]["revenue_per_customer"] == 80.0
    assert ranked["items"][2]["retention"] is None and ranked["items"][1]["predicted_clv"] == 50.0
    one = (await client.get("/v1/stakeholders/performance", params={"kind": "partner", "limit": 1})).json()
    two = await client.get("/v1/stakeholders/performance", params={"cursor": one["next_cursor"], "kind": "partner"})
    assert [p["name"] for p in one["items"] + two.json()["items"]] == ["Acme", "Bolt", "Idle"]
    everyone = (await client.get("/v1/stakeholders/performance")).json()["items"]
    assert [p["name"] for p in everyone][:2] == ["Fjord", "Acme"]

    # A relation that ended counts only when asked for.
    await client.delete(f"/v1/customers/{c2}/relations/{r2['id']}")
    now_only = await acme_customers()
    assert (now_only["customers"], now_only["revenue"], len(now_only["items"])) == (1, 130.0, 2)
    with_ended = await acme_customers(include_ended="true")
    assert (with_ended["customers"], with_ended["revenue"], len(with_ended["items"])) == (2, 160.0, 3)

    # A partner sees its own customers and its own row only; another's is as unknown as a missing one.
    mine = await client.get(f"/v1/stakeholders/{acme['id']}/customers", headers=as_partner(acme["id"]))
    assert mine.status_code == 200 and mine.json()["revenue"] == 130.0
    for hidden in (bolt["id"], fjord["id"], _id(999)):
        response = await client.get(f"/v1/stakeholders/{hidden}/customers", headers=as_partner(acme["id"]))
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    own = (await client.get("/v1/stakeholders/performance", headers=as_partner(acme["id"]))).json()["items"]
    assert [p["stakeholder_id"] for p in own] == [acme["id"]]

    # The export of a customer shows its relations and purchases.
    export = (await client.get(f"/internal/customers/{c1}/personal-data")).json()
    tables = {t["table"]: t for t in export["tables"]}
    assert {r["id"] for r in tables["customer_relations"]["rows"]} >= {r1["id"]}
    assert {r["transaction_id"] for r in tables["customer_purchases"]["rows"]} == {"t1", "t2"}
    # Its erasure keeps them: who resold to a customer, and what it bought, are facts, not personal data.
    erased = catalog_event(
        "identify",
        "crm.identify.customer.erased",
        {"erasure_id": "e-1", "customer_id": c1, "merged_ids": [], "requested_at": now.isoformat()},
        c1,
    )
    await _publish_all(suite.nats.url, [erased])
    [report] = await _read_stream(suite.nats.url, "crm.network.customer.erasure_applied", 1)
    assert report["data"]["customer_id"] == c1
    kept = (await client.get(f"/v1/stakeholders/{acme['id']}/customers")).json()
    assert (kept["customers"], kept["revenue"]) == (1, 130.0)


# --- lifecycle: the account manager takes the outreach ticket ----------------------------------------


async def test_lifecycle_gives_a_playbooks_outreach_to_the_account_manager(suite):
    network = await start(suite, "network")
    lifecycle = await start(suite, "lifecycle")
    now = datetime.now(UTC)
    managed, replaced, unmanaged = _id(21), _id(22), _id(23)
    customers = (managed, replaced, unmanaged)
    events = [_created(c) for c in customers]
    events += [_scored(c, "at_risk", clv=300.0) for c in customers]
    events += [_purchase(f"p-{c[-2:]}", c, "40", now - timedelta(days=30)) for c in customers]
    await _publish_all(suite.nats.url, events)
    await _known(network, customers)
    ann = await _stakeholder(network.client, "employee", "Ann")
    bob = await _stakeholder(network.client, "employee", "Bob")
    await _relate(network.client, managed, ann["id"], "account_manager_of")
    await _relate(network.client, replaced, ann["id"], "account_manager_of")
    await _relate(network.client, replaced, bob["id"], "account_manager_of")  # ends Ann's
    left = await _relate(network.client, unmanaged, bob["id"], "account_manager_of")
    assert (await network.client.delete(f"/v1/customers/{unmanaged}/relations/{left['id']}")).status_code == 200

    async def managers():
        async with lifecycle.runtime.db.reader() as session:
            found = await playbooks_repository.account_managers(session, list(customers))
        return found if found == {managed: ann["id"], replaced: bob["id"]} else None

    await wait_until(managers, what="lifecycle to learn the account managers")
    playbook = await _create_playbook(
        lifecycle.client, name="Retain", trigger_stages=["at_risk"], outreach_queue="retention", holdout_share=0
    )
    after = datetime.now(UTC) + timedelta(seconds=1)
    await _publish_all(suite.nats.url, [_stage(c, "active", "at_risk", after) for c in customers])
    entered = await _read_stream(suite.nats.url, "crm.lifecycle.playbook.entered", 3, settle=True)
    assignees = {e["data"]["customer_id"]: e["data"]["outreach_assignee_id"] for e in entered}
    assert assignees == {managed: ann["id"], replaced: bob["id"], unmanaged: None}
    assert {e["data"]["playbook_id"] for e in entered} == {playbook["id"]}

    async def ticket_of(cid):
        items = (await lifecycle.client.get(f"/v1/customers/{cid}/tickets")).json()["items"]
        return items[0] if items else None

    ticket = await wait_until(lambda: ticket_of(managed), what="the outreach ticket")
    assert ticket["assignee_id"] == ann["id"] and ticket["queue"] == "retention"
    queued = await wait_until(lambda: ticket_of(unmanaged), what="the queue's outreach ticket")
    assert queued["assignee_id"] is None


async def test_lifecycles_account_managers_follow_merges(suite):
    lifecycle = await start(suite, "lifecycle")
    survivor, merged, other, merged_b = _id(31), _id(32), _id(33), _id(34)

    def started(relation_id, cid, manager, at):
        data = {
            "relation_id": relation_id,
            "customer_id": cid,
            "stakeholder_id": manager,
            "stakeholder_kind": "employee",
            "relation": "account_manager_of",
            "started_at": at,
        }
        return catalog_event("network", "crm.network.relation.started", data, cid)

    merge = {"survivor_id": survivor, "merged_ids": [merged], "merged_at": "2026-05-01T00:00:00Z"}
    merge_other = {"survivor_id": other, "merged_ids": [merged_b], "merged_at": "2026-05-01T00:00:00Z"}
    events = [
        started("r1", survivor, "emp-s", "2026-01-01T00:00:00Z"),
        started("r2", merged, "emp-m", "2026-03-01T00:00:00Z"),
        started("r3", merged_b, "emp-b", "2026-02-01T00:00:00Z"),
        catalog_event("identify", "crm.identify.customer.merged", merge, survivor),
        catalog_event("identify", "crm.identify.customer.merged", merge_other, other),
        # network's merge keeps the survivor's own manager and ends the merged customer's.
        catalog_event(
            "network",
            "crm.network.relation.ended",
            {
                **started("r2", survivor, "emp-m", "2026-03-01T00:00:00Z").data,
                "ended_at": "2026-05-01T00:00:00Z",
                "reason": "merged",
                "changed_by": "merge",
            },
            survivor,
        ),
    ]
    await _publish_all(suite.nats.url, events)

    async def managers():
        async with lifecycle.runtime.db.reader() as session:
            found = await playbooks_repository.account_managers(session, [survivor, merged, other, merged_b])
        return found if found == {survivor: "emp-s", other: "emp-b"} else None

    # The survivor keeps its own manager; one without takes the merged customer's. The order in
    # which lifecycle's consumers read the merge and the relations does not matter.
    await wait_until(managers, what="the account managers to follow the merges")
