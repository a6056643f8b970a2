"""value against a real nats-server and database, fed by identify and lifecycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import nats
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import update

from services.value.models import Offer
from shared.events.envelope import make_event
from shared.http.pagination import encode_cursor
from tests.support import wait_until


async def _offers(client, customer_id, n):
    response = await client.get(f"/v1/customers/{customer_id}/offers")
    return response.json()["items"] if response.status_code == 200 and len(response.json()["items"]) == n else None


async def _known(value, customer_id):
    response = await value.client.get(f"/v1/customers/{customer_id}/offers")
    return response.status_code == 200


async def _customer(identify, value, email):
    response = await identify.client.post("/v1/customers", json={"email": email})
    assert response.status_code == 201, response.text
    customer = response.json()
    await wait_until(lambda: _known(value, customer["id"]), what="value knows the customer")
    return customer


async def _read_stream(url: str, subject: str, count: int, *, settle: bool = False) -> list[dict]:
    """The events on `subject` in the CRM stream, polled until there are `count` of them.

    With `settle`, one more pull afterwards proves there is no further event.
    """

    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream="CRM")
        seen: list[dict] = []

        async def pull(want: int) -> bool:
            try:
                msgs = await sub.fetch(want, timeout=0.5)
            except (NatsTimeout, TimeoutError):  # nats-py raises a bare one when nothing at all came
                return False
            for msg in msgs:
                await msg.ack()
                seen.append(json.loads(msg.data))
            return True

        async def enough() -> bool:
            if len(seen) < count:
                await pull(count - len(seen))
            return len(seen) >= count

        await wait_until(enough, what=f"{count} events on {subject}")
        if settle:
            assert not await pull(10), f"more than {count} events on {subject}: {seen}"
        return seen
    finally:
        await nc.close()


def _handled(service, consumer: str) -> int:
    """How many events `consumer` has applied (counted at each commit). Not its inbox rows:
    an event that all the specs of a shared durable applied is one row for all of them."""

    return int(service.runtime.metrics.events_handled.labels(service.settings.service, consumer)._value.get())


async def _no_pending(service) -> bool:
    return await service.runtime.relay.pending_count() == 0


async def _purchase(identify, customer_id, n):
    response = await identify.client.post(
        "/v1/transactions",
        json={"customer_id": customer_id, "amount": "20", "currency": "USD", "occurred_at": f"2026-02-0{n}T00:00:00Z"},
    )
    assert response.status_code == 201, response.text


async def test_the_first_purchase_brings_exactly_one_welcome_offer(suite):
    identify = await suite.start("identify")
    await suite.start("lifecycle")
    value = await suite.start("value")
    customer = await _customer(identify, value, "w@example.com")
    assert await _offers(value.client, customer["id"], 0) == []  # a prospect gets nothing

    await _purchase(identify, customer["id"], 1)
    offers = await wait_until(lambda: _offers(value.client, customer["id"], 1), what="welcome offer")
    welcome = offers[0]
    assert welcome["customer_id"] == customer["id"]
    assert welcome["kind"] == "welcome" and welcome["status"] == "issued"
    assert welcome["title"] == "Welcome — 10% off your next purchase"
    assert welcome["discount_percent"] == "10" and welcome["redeemed_at"] is None
    validity = datetime.fromisoformat(welcome["expires_at"]) - datetime.fromisoformat(welcome["issued_at"])
    assert validity == timedelta(days=30)

    # The second purchase (new → active) brings no second welcome offer.
    await _purchase(identify, customer["id"], 2)
    await wait_until(lambda: _at_least(value, 3), what="all three stage changes seen by value")
    assert len((await value.client.get(f"/v1/customers/{customer['id']}/offers")).json()["items"]) == 1

    # The offer was announced, caused by the stage change to new.
    changes = await _read_stream(suite.nats.url, "crm.lifecycle.stage.changed", 3)
    to_new = next(e for e in changes if e["data"]["to_stage"] == "new")
    await wait_until(lambda: _no_pending(value), what="value's outbox published")
    issued = await _read_stream(suite.nats.url, "crm.value.offer.issued", 1, settle=True)
    event = issued[0]
    assert event["subject"] == customer["id"] and event["causationid"] == to_new["id"]
    assert event["data"]["id"] == welcome["id"] and event["data"]["kind"] == "welcome"
    assert event["data"]["discount_percent"] == "10"

    # Even a repeated `to_stage: new` (say, a replay after a merge) never brings a second one.
    replay = make_event(
        service="lifecycle",
        type="crm.lifecycle.stage.changed",
        data={
            "customer_id": customer["id"],
            "from_stage": "prospect",
            "to_stage": "new",
            "at": datetime.now(UTC).isoformat(),
            "cause_event_id": "replayed",
        },
        subject=customer["id"],
    )
    nc = await nats.connect(suite.nats.url)
    try:
        await nc.jetstream().publish(replay.type, replay.to_json(), headers={"Nats-Msg-Id": replay.id})
    finally:
        await nc.close()
    await wait_until(lambda: _at_least(value, 4), what="the replayed change seen")
    assert len((await value.client.get(f"/v1/customers/{customer['id']}/offers")).json()["items"]) == 1


async def _at_least(value, n: int) -> bool:
    return _handled(value, "value-welcome") >= n


async def test_a_new_buyer_value_has_not_heard_of_gets_the_welcome_offer_and_becomes_known(suite):
    value = await suite.start("value")
    change = make_event(
        service="lifecycle",
        type="crm.lifecycle.stage.changed",
        data={
            "customer_id": "early-bird",
            "from_stage": "prospect",
            "to_stage": "new",
            "at": datetime.now(UTC).isoformat(),
            "cause_event_id": "some-purchase",
        },
        subject="early-bird",
    )
    nc = await nats.connect(suite.nats.url)
    try:
        await nc.jetstream().publish(change.type, change.to_json(), headers={"Nats-Msg-Id": change.id})
    finally:
        await nc.close()
    offers = await wait_until(lambda: _offers(value.client, "early-bird", 1), what="welcome offer")
    assert offers[0]["kind"] == "welcome"
    manual = await value.client.post("/v1/offers", json={"customer_id": "early-bird", "kind": "bundle", "title": "B"})
    assert manual.status_code == 201, manual.text


async def test_offers_are_issued_listed_and_redeemed_once(suite):
    identify = await suite.start("identify")
    value = await suite.start("value")
    customer = await _customer(identify, value, "o@example.com")
    created = []
    for n in range(3):
        response = await value.client.post(
            "/v1/offers",
            json={"customer_id": customer["id"], "kind": "discount", "title": f"Offer {n}", "discount_percent": "12.5"},
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    first = created[0]
    assert first["customer_id"] == customer["id"] and first["kind"] == "discount" and first["title"] == "Offer 0"
    assert first["status"] == "issued" and first["discount_percent"] == "12.5"
    assert first["expires_at"] is None and first["redeemed_at"] is None and first["issued_at"]
    expiring = await value.client.post(
        "/v1/offers",
        json={
            "customer_id": customer["id"],
            "kind": "bundle",
            "title": "  Two for one  ",
            "expires_at": "2999-01-01T00:00:00+02:00",
        },
    )
    assert expiring.status_code == 201, expiring.text
    assert expiring.json()["title"] == "Two for one" and expiring.json()["discount_percent"] is None
    assert datetime.fromisoformat(expiring.json()["expires_at"]) == datetime(2998, 12, 31, 22, tzinfo=UTC)
    assert (await value.client.get(f"/v1/offers/{expiring.json()['id']}")).json() == expiring.json()
    created.append(expiring.json())
    got = await value.client.get(f"/v1/offers/{created[1]['id']}")
    assert got.status_code == 200 and got.json() == created[1]

    # Newest first, one per page, each cursor leading to the next.
    titles, cursor, pages = [], None, 0
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await value.client.get(f"/v1/customers/{customer['id']}/offers", params=params)).json()
        pages += 1
        titles += [offer["title"] for offer in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert titles == ["Two for one", "Offer 2", "Offer 1", "Offer 0"] and pages == 4
    for forged in ("%%%", encode_cursor(1), encode_cursor("a", "b")):
        response = await value.client.get(f"/v1/customers/{customer['id']}/offers", params={"cursor": forged})
        assert response.status_code == 422, (forged, response.text)
        assert response.json()["detail"][0]["field"] == "query.cursor", (forged, response.text)

    redeemed = await value.client.post(f"/v1/offers/{first['id']}/redeem")
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["status"] == "redeemed" and redeemed.json()["redeemed_at"]
    assert (await value.client.get(f"/v1/offers/{first['id']}")).json() == redeemed.json()
    twice = await value.client.post(f"/v1/offers/{first['id']}/redeem")
    assert twice.status_code == 409 and twice.json()["error"] == "conflict"
    assert "already redeemed" in twice.json()["detail"]
    for path in ("/v1/offers/nope/redeem",):
        response = await value.client.post(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    for path in ("/v1/offers/nope", "/v1/customers/nobody/offers"):
        response = await value.client.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"

    # An offer past its expiry reads as expired and cannot be redeemed.
    async with value.runtime.db.writer() as session, session.begin():
        await session.execute(
            update(Offer).where(Offer.id == created[1]["id"]).values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
    assert (await value.client.get(f"/v1/offers/{created[1]['id']}")).json()["status"] == "expired"
    expired = await value.client.post(f"/v1/offers/{created[1]['id']}/redeem")
    assert expired.status_code == 409 and expired.json()["error"] == "conflict"
    assert "expired" in expired.json()["detail"]
    assert (await value.client.get(f"/v1/offers/{created[1]['id']}")).json()["status"] == "expired"

    # Four offers issued, one redeemed: exactly those events, in that order.
    await wait_until(lambda: _no_pending(value), what="value's outbox published")
    issued = await _read_stream(suite.nats.url, "crm.value.offer.issued", 4, settle=True)
    assert [e["data"]["id"] for e in issued] == [offer["id"] for offer in created]
    assert all(e["subject"] == customer["id"] for e in issued)
    assert issued[0]["data"]["discount_percent"] == "12.5" and issued[3]["data"]["expires_at"]
    redemptions = await _read_stream(suite.nats.url, "crm.value.offer.redeemed", 1, settle=True)
    assert redemptions[0]["data"] == {
        "id": first["id"],
        "customer_id": customer["id"],
        "kind": "discount",
        "redeemed_at": redemptions[0]["data"]["redeemed_at"],
        # An offer made by hand: no template, campaign or playbook; no purchase named.
        "transaction_id": None,
        "template_id": None,
        "coupon_code": first["coupon_code"],
        "campaign_id": None,
        "playbook_id": None,
    }
    assert datetime.fromisoformat(redemptions[0]["data"]["redeemed_at"]) == datetime.fromisoformat(
        redeemed.json()["redeemed_at"]
    )


async def test_invalid_offers_are_refused_naming_the_field(suite):
    identify = await suite.start("identify")
    value = await suite.start("value")
    customer = await _customer(identify, value, "v@example.com")
    base = {"customer_id": customer["id"], "kind": "discount", "title": "T"}
    cases = [
        ({**base, "discount_percent": "0"}, "body.discount_percent"),
        ({**base, "discount_percent": "-5"}, "body.discount_percent"),
        ({**base, "discount_percent": "150"}, "body.discount_percent"),
        ({**base, "discount_percent": "100.01"}, "body.discount_percent"),
        ({**base, "discount_percent": "ten"}, "body.discount_percent"),
        ({**base, "surprise": True}, "body.surprise"),
        ({**base, "expires_at": "2020-01-01T00:00:00Z"}, "body.expires_at"),
        ({**base, "expires_at": "2999-01-01T00:00:00"}, "body.expires_at"),
        ({**base, "kind": "   "}, "body.kind"),
        ({**base, "kind": "k" * 51}, "body.kind"),
        ({**base, "title": ""}, "body.title"),
        ({**base, "customer_id": "unknown"}, "body.customer_id"),
        ({k: v for k, v in base.items() if k != "title"}, "body.title"),
        ({k: v for k, v in base.items() if k != "customer_id"}, "body.customer_id"),
    ]
    for body, field in cases:
        response = await value.client.post("/v1/offers", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "validation_error"
        assert [err["field"] for err in response.json()["detail"]] == [field], (body, response.json())
    # The bounds themselves are fine.
    for percent in ("100", "0.01"):
        response = await value.client.post("/v1/offers", json={**base, "discount_percent": percent})
        assert response.status_code == 201, response.text
    assert (await value.client.post("/v1/offers", json={**base, "kind": "k" * 50})).status_code == 201
    assert len((await value.client.get(f"/v1/customers/{customer['id']}/offers")).json()["items"]) == 3


async def test_offers_are_listed_across_customers_with_filters(suite):
    identify = await suite.start("identify")
    value = await suite.start("value")
    ada = await _customer(identify, value, "ada-offers@example.com")
    bob = await _customer(identify, value, "bob-offers@example.com")

    async def offer(customer, kind):
        response = await value.client.post(
            "/v1/offers", json={"customer_id": customer["id"], "kind": kind, "title": f"{kind} for {customer['email']}"}
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    ada_gift, bob_gift, ada_vip, bob_vip = (
        await offer(ada, "gift"),
        await offer(bob, "gift"),
        await offer(ada, "vip"),
        await offer(bob, "vip"),
    )
    assert (await value.client.post(f"/v1/offers/{bob_gift}/redeem")).status_code == 200
    async with value.runtime.db.writer() as session, session.begin():
        await session.execute(
            update(Offer).where(Offer.id == ada_vip).values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )

    async def ids(**params):
        seen, cursor = [], None
        while True:
            response = await value.client.get(
                "/v1/offers", params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
            )
            assert response.status_code == 200, response.text
            seen += [item["id"] for item in response.json()["items"]]
            if (cursor := response.json()["next_cursor"]) is None:
                return seen

    assert await ids() == [bob_vip, ada_vip, bob_gift, ada_gift]  # newest first
    assert await ids(customer_id=ada["id"]) == [ada_vip, ada_gift]
    assert await ids(kind="gift") == [bob_gift, ada_gift]
    assert await ids(status="redeemed") == [bob_gift]
    assert await ids(status="expired") == [ada_vip]
    assert await ids(status="issued") == [bob_vip, ada_gift]
    assert await ids(status="issued", kind="vip", customer_id=bob["id"]) == [bob_vip]
    assert await ids(kind="nothing") == []

    unknown_status = await value.client.get("/v1/offers", params={"status": "lost"})
    assert unknown_status.status_code == 422 and unknown_status.json()["detail"][0]["field"] == "query.status"
    nobody = await value.client.get("/v1/offers", params={"customer_id": "no-such-customer"})
    assert nobody.status_code == 404
    assert nobody.json()["detail"] == [
        {"field": "query.customer_id", "message": "no customer with id no-such-customer", "type": "value_error"}
    ]
    assert (await value.client.get("/v1/offers", params={"type": "gift"})).status_code == 422
