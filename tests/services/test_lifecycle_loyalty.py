"""lifecycle's loyalty programme against a real nats-server and databases, fed by the real
identify and value services: earning, expiry, refunds and voids, points offers, tiers,
redemptions end to end with value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.lifecycle.loyalty.service import add_months, sweep
from shared.db.uow import transaction
from tests.services.test_lifecycle import _read_stream
from tests.services.test_value_campaigns import _created, _id, _publish_all, _scored
from tests.support import wait_until

PROGRAMME = {
    "points_per_unit": "1",
    "expiry_months": 12,
    "tier_basis": "points_12m",
    "tiers": [
        {"name": "bronze", "threshold": 1},
        {"name": "silver", "threshold": 100},
        {"name": "gold", "threshold": 200},
    ],
}


async def _customer(identify, lifecycle, email):
    customer = (await identify.client.post("/v1/customers", json={"email": email})).json()
    await wait_until(lambda: _loyalty(lifecycle, customer["id"]), what="lifecycle knows the customer")
    return customer["id"]


async def _loyalty(lifecycle, customer_id, **params):
    response = await lifecycle.client.get(f"/v1/customers/{customer_id}/loyalty", params=params)
    return response.json() if response.status_code == 200 else None


async def _balance(lifecycle, customer_id, balance, entries):
    body = await _loyalty(lifecycle, customer_id)
    return body if body and body["balance"] == balance and len(body["items"]) == entries else None


async def _buy(identify, customer_id, amount, key, occurred_at="2026-11-01T10:00:00Z"):
    response = await identify.client.post(
        "/v1/transactions",
        json={
            "customer_id": customer_id,
            "amount": amount,
            "currency": "USD",
            "occurred_at": occurred_at,
            "external_id": key,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_points_are_earned_taken_back_by_refunds_and_voids_and_move_tiers(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    put = await lifecycle.client.put("/v1/loyalty/programme", json=PROGRAMME)
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and [t["name"] for t in put.json()["tiers"]] == ["bronze", "silver", "gold"]
    customer = await _customer(identify, lifecycle, "loyal@example.com")
    empty = await _loyalty(lifecycle, customer)
    assert empty["balance"] == 0 and empty["tier"] is None and empty["items"] == []

    first = await _buy(identify, customer, "150.90", "p1")  # 150 points (rounded down)
    body = await wait_until(lambda: _balance(lifecycle, customer, 150, 1), what="points earned")
    earned = body["items"][0]
    assert earned["kind"] == "earned" and earned["points"] == 150 and earned["source_id"] == first["id"]
    assert datetime.fromisoformat(earned["expires_at"]) == datetime(2027, 11, 1, 10, tzinfo=UTC)
    assert body["tier"] == "silver" and body["points_last_12_months"] == 150

    # A third of the money back takes a third of the points back (floor(150 × 50.30 / 150.90) = 50).
    refund = await identify.client.post(
        f"/v1/transactions/{first['id']}/refund", json={"amount": "50.30", "reason": "damaged"}
    )
    assert refund.status_code == 201, refund.text
    body = await wait_until(lambda: _balance(lifecycle, customer, 100, 2), what="refund taken back")
    assert (body["items"][0]["kind"], body["items"][0]["points"]) == ("refunded", -50)
    assert body["tier"] == "silver" and body["points_last_12_months"] == 100

    second = await _buy(identify, customer, "120", "p2")
    body = await wait_until(lambda: _balance(lifecycle, customer, 220, 3), what="second purchase")
    assert body["tier"] == "gold"
    # The programme counts each tier's customers (the PUT's answer does not).
    tiers = (await lifecycle.client.get("/v1/loyalty/programme")).json()["tiers"]
    assert [(t["name"], t["members"]) for t in tiers] == [("bronze", 0), ("silver", 0), ("gold", 1)]
    assert all(t["members"] is None for t in put.json()["tiers"])
    # The void takes back all of the purchase's points: the tier comes down again.
    void = await identify.client.post(f"/v1/transactions/{second['id']}/void", json={"reason": "test order"})
    assert void.status_code == 200, void.text
    body = await wait_until(lambda: _balance(lifecycle, customer, 100, 4), what="void taken back")
    assert [(e["kind"], e["points"], e["balance"]) for e in body["items"]] == [
        ("voided", -120, 100),
        ("earned", 120, 220),
        ("refunded", -50, 100),
        ("earned", 150, 150),
    ]
    assert body["tier"] == "silver"

    # The ledger pages newest first.
    page = await _loyalty(lifecycle, customer, limit=3)
    rest = await _loyalty(lifecycle, customer, limit=3, cursor=page["next_cursor"])
    assert [e["entry_id"] for e in page["items"] + rest["items"]] == [e["entry_id"] for e in body["items"]]
    assert rest["next_cursor"] is None

    tiers = await _read_stream(suite.nats.url, "crm.lifecycle.loyalty.tier_changed", 3, settle=True)
    assert [(e["data"]["from_tier"], e["data"]["to_tier"]) for e in tiers] == [
        (None, "silver"),
        ("silver", "gold"),
        ("gold", "silver"),
    ]
    changes = await _read_stream(suite.nats.url, "crm.lifecycle.loyalty.points_changed", 4, settle=True)
    assert [(e["data"]["kind"], e["data"]["points"]) for e in changes] == [
        ("earned", 150),
        ("refunded", -50),
        ("earned", 120),
        ("voided", -120),
    ]
    assert all(e["subject"] == customer for e in changes)

    # The rest of the purchase refunded: the rest of its points (100) go too.
    rest_refund = await identify.client.post(
        f"/v1/transactions/{first['id']}/refund", json={"amount": "100.60", "reason": "returned"}
    )
    assert rest_refund.status_code == 201
    body = await wait_until(lambda: _balance(lifecycle, customer, 0, 5), what="full refund")
    assert body["tier"] is None


async def test_points_expire_exactly_once_and_tiers_age_out(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    assert (await lifecycle.client.put("/v1/loyalty/programme", json=PROGRAMME)).status_code == 200
    customer = await _customer(identify, lifecycle, "quiet@example.com")

    # A purchase older than the expiry: earned and expired at once, the expiry dated when it fell due.
    old = datetime.now(UTC) - timedelta(days=400)
    await _buy(identify, customer, "40", "old", occurred_at=old.isoformat())
    body = await wait_until(lambda: _balance(lifecycle, customer, 0, 2), what="old points expired")
    expired = body["items"][0]
    assert (expired["kind"], expired["points"], expired["balance"]) == ("expired", -40, 0)
    assert datetime.fromisoformat(expired["at"]) == add_months(old, 12)
    assert body["points_last_12_months"] == 0 and body["tier"] is None

    await _buy(identify, customer, "150", "recent", occurred_at="2026-11-01T10:00:00Z")
    body = await wait_until(lambda: _balance(lifecycle, customer, 150, 3), what="recent points")
    assert body["tier"] == "silver"

    # Thirteen months on, the sweep expires them (once) and the tier ages out.
    later = datetime(2027, 12, 2, tzinfo=UTC)
    async with transaction(lifecycle.runtime.db.writer) as session:
        assert await sweep(session=session, now=later) == {"expired_entries": 1, "tier_changes": 1}
    async with transaction(lifecycle.runtime.db.writer) as session:
        assert await sweep(session=session, now=later) == {"expired_entries": 0, "tier_changes": 0}
    body = await _loyalty(lifecycle, customer)
    assert [(e["kind"], e["points"], e["balance"]) for e in body["items"][:2]] == [
        ("expired", -150, 0),
        ("earned", 150, 150),
    ]
    assert datetime.fromisoformat(body["items"][0]["at"]) == datetime(2027, 11, 1, 10, tzinfo=UTC)
    assert body["tier"] is None
    # Through HTTP the sweep finds nothing left to do now.
    swept = await lifecycle.client.post("/v1/loyalty/sweeps")
    assert swept.status_code == 200 and swept.json()["expired_entries"] == 0


async def test_points_offers_credit_and_redemptions_go_through_value(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    value = await suite.start("value")
    customer = await _customer(identify, lifecycle, "redeemer@example.com")
    await wait_until(lambda: _ok(value.client.get(f"/v1/customers/{customer}/offers")), what="value knows the customer")

    # A points offer from value credits its points.
    bonus = await _template(value, kind="points", title="300 bonus points", points=300)
    issued = await value.client.post(f"/v1/offer-templates/{bonus['id']}/offers", json={"customer_id": customer})
    assert issued.status_code == 201, issued.text
    body = await wait_until(lambda: _balance(lifecycle, customer, 300, 1), what="points offer credited")
    assert (body["items"][0]["kind"], body["items"][0]["source_id"]) == ("credited", issued.json()["id"])

    # A reward sold for points: lifecycle learns its price from value's event.
    reward = await _template(value, kind="percent_off", title="20% off", percent_off="20", points_price=250)
    redeem = await wait_until(lambda: _redeemed(lifecycle, customer, reward["id"]), what="lifecycle knows the reward")
    assert redeem["points"] == 250 and redeem["status"] == "pending" and redeem["balance"] == 50
    offer = await wait_until(lambda: _offer_of(value, customer, reward["id"]), what="value issued the offer")
    assert offer["kind"] == "percent_off"
    redeemed = await _read_stream(suite.nats.url, "crm.lifecycle.loyalty.points_redeemed", 1)
    assert redeemed[0]["data"]["redemption_id"] == redeem["redemption_id"]
    issued_events = await _read_stream(suite.nats.url, "crm.value.offer.issued", 2)
    assert issued_events[1]["data"]["redemption_id"] == redeem["redemption_id"]

    # Too few points: 409, nothing written, no event.
    short = await lifecycle.client.post(
        f"/v1/customers/{customer}/loyalty/redemptions", json={"template_id": reward["id"]}
    )
    assert short.status_code == 409 and short.json()["error"] == "insufficient_points"
    assert "250" in short.json()["detail"] and "50" in short.json()["detail"]
    body = await _loyalty(lifecycle, customer)
    assert body["balance"] == 50 and len(body["items"]) == 2

    # value refuses (the customer's cap): the points come back.
    capped = await _template(
        value, kind="free_item", title="A mug", free_item="mug", points_price=10, per_customer_cap=1
    )
    await wait_until(lambda: _redeemed(lifecycle, customer, capped["id"]), what="first mug")
    again = await lifecycle.client.post(
        f"/v1/customers/{customer}/loyalty/redemptions", json={"template_id": capped["id"]}
    )
    assert again.status_code == 201
    body = await wait_until(lambda: _balance(lifecycle, customer, 40, 5), what="refused redemption returned")
    assert [(e["kind"], e["points"]) for e in body["items"][:3]] == [
        ("returned", 10),
        ("redeemed", -10),
        ("redeemed", -10),
    ]
    refused = await _read_stream(suite.nats.url, "crm.value.loyalty_redemption.refused", 1, settle=True)
    assert refused[0]["data"]["reason"] == "customer_cap"
    assert refused[0]["data"]["redemption_id"] == again.json()["redemption_id"]

    # Bad input: a template not sold for points is 422 naming it; an unknown customer 404.
    not_for_points = await lifecycle.client.post(
        f"/v1/customers/{customer}/loyalty/redemptions", json={"template_id": bonus["id"]}
    )
    assert not_for_points.status_code == 422 and "body.template_id" in not_for_points.text
    unknown = await lifecycle.client.post(
        "/v1/customers/no-such-customer/loyalty/redemptions", json={"template_id": reward["id"]}
    )
    assert unknown.status_code == 404
    assert (await lifecycle.client.get("/v1/customers/no-such-customer/loyalty")).status_code == 404
    extra = await lifecycle.client.post(
        f"/v1/customers/{customer}/loyalty/redemptions", json={"template_id": reward["id"], "points": 1}
    )
    assert extra.status_code == 422


async def test_clv_tiers_follow_identify_scores(suite):
    lifecycle = await suite.start("lifecycle")
    clv = {
        **PROGRAMME,
        "tier_basis": "clv",
        "tiers": [{"name": "silver", "threshold": 100}, {"name": "gold", "threshold": 500}],
    }
    assert (await lifecycle.client.put("/v1/loyalty/programme", json=clv)).status_code == 200
    a = _id(71)
    await _publish_all(suite.nats.url, [_created(a), _scored(a, "loyal", clv=120.0)])
    body = await wait_until(lambda: _tiered(lifecycle, a, "silver"), what="a silver tier from the CLV")
    assert body["points_last_12_months"] is None and body["balance"] == 0
    await _publish_all(suite.nats.url, [_scored(a, "champions", clv=800.0)])
    await wait_until(lambda: _tiered(lifecycle, a, "gold"), what="gold")
    await _publish_all(suite.nats.url, [_scored(a, "hibernating", clv=20.0)])
    await wait_until(lambda: _tiered(lifecycle, a, None), what="no tier")
    tiers = await _read_stream(suite.nats.url, "crm.lifecycle.loyalty.tier_changed", 3, settle=True)
    assert [(e["data"]["from_tier"], e["data"]["to_tier"]) for e in tiers] == [
        (None, "silver"),
        ("silver", "gold"),
        ("gold", None),
    ]


async def _tiered(lifecycle, customer_id, tier):
    body = await _loyalty(lifecycle, customer_id)
    return body if body and body["tier"] == tier and body["tier_since"] else None


async def test_programme_validation(suite):
    lifecycle = await suite.start("lifecycle")
    default = (await lifecycle.client.get("/v1/loyalty/programme")).json()
    assert default["version"] == 0 and default["tier_basis"] == "points_12m"
    for bad in (
        {**PROGRAMME, "tiers": [{"name": "a", "threshold": 10}, {"name": "b", "threshold": 5}]},
        {**PROGRAMME, "tiers": [{"name": "a", "threshold": 1}, {"name": "a", "threshold": 5}]},
        {**PROGRAMME, "points_per_unit": "-1"},
        {**PROGRAMME, "tier_basis": "vibes"},
        {**PROGRAMME, "expiry_months": 0},
    ):
        response = await lifecycle.client.put("/v1/loyalty/programme", json=bad)
        assert response.status_code == 422, bad
    assert (await lifecycle.client.get("/v1/loyalty/programme")).json()["version"] == 0


async def _ok(request):
    response = await request
    return response.status_code == 200


async def _template(value, **fields):
    response = await value.client.post("/v1/offer-templates", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def _redeemed(lifecycle, customer_id, template_id):
    response = await lifecycle.client.post(
        f"/v1/customers/{customer_id}/loyalty/redemptions", json={"template_id": template_id}
    )
    if response.status_code == 422:  # lifecycle has not heard of the template yet
        return None
    assert response.status_code == 201, response.text
    return response.json()


async def _offer_of(value, customer_id, template_id):
    response = await value.client.get(f"/v1/customers/{customer_id}/offers")
    return next((o for o in response.json()["items"] if o.get("template_id") == template_id), None)


async def test_export_shows_the_ledger_and_erasure_keeps_its_facts(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    customer = await _customer(identify, lifecycle, "export@example.com")
    await _buy(identify, customer, "30", "x1")
    await wait_until(lambda: _balance(lifecycle, customer, 30, 1), what="points earned")

    async def held():
        document = (await lifecycle.client.get(f"/internal/customers/{customer}/personal-data")).json()
        return {t["table"]: t for t in document["tables"]}

    tables = await held()
    assert [(r["kind"], r["points"]) for r in tables["loyalty_entries"]["rows"]] == [("earned", 30)]
    assert [r["balance"] for r in tables["loyalty_accounts"]["rows"]] == [30]
    # Points hold no personal data (no column is marked): nothing to null.
    assert tables["loyalty_entries"]["personal"] == {} and tables["loyalty_accounts"]["personal"] == {}

    erased = await identify.client.post(f"/v1/customers/{customer}/erasure")
    assert erased.status_code == 202, erased.text
    report = await wait_until(
        lambda: _erasure_applied(identify, erased.json()["id"]), what="lifecycle applied the erasure"
    )
    assert report
    # An erasure keeps the non-personal facts under the id: the balance and ledger stay.
    tables = await held()
    assert [r["balance"] for r in tables["loyalty_accounts"]["rows"]] == [30]


async def _erasure_applied(identify, erasure_id):
    body = (await identify.client.get(f"/v1/erasures/{erasure_id}")).json()
    return next((s for s in body.get("services", []) if s["service"] == "lifecycle" and s.get("applied_at")), None)
