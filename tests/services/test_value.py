"""value against a real nats-server and database, fed by identify and lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from services.value.models import Offer
from tests.support import wait_until


async def _offers(client, customer_id, n):
    response = await client.get(f"/v1/customers/{customer_id}/offers")
    return response.json()["items"] if response.status_code == 200 and len(response.json()["items"]) == n else None


async def _known(value, customer_id):
    response = await value.client.get(f"/v1/customers/{customer_id}/offers")
    return response.status_code == 200


async def _customer(identify, value, email):
    customer = (await identify.client.post("/v1/customers", json={"email": email})).json()
    await wait_until(lambda: _known(value, customer["id"]), what="value knows the customer")
    return customer


async def test_the_first_purchase_brings_exactly_one_welcome_offer(suite):
    identify = await suite.start("identify")
    await suite.start("lifecycle")
    value = await suite.start("value")
    customer = await _customer(identify, value, "w@example.com")
    for n in (1, 2):
        await identify.client.post(
            "/v1/transactions",
            json={"customer_id": customer["id"], "amount": "20", "currency": "USD",
                  "occurred_at": f"2026-02-0{n}T00:00:00Z"},
        )
    offers = await wait_until(lambda: _offers(value.client, customer["id"], 1), what="welcome offer")
    welcome = offers[0]
    assert welcome["kind"] == "welcome" and welcome["status"] == "issued"
    assert welcome["discount_percent"] == "10"
    lifecycle = suite.services["lifecycle"]
    await wait_until(
        lambda: _stage_active(lifecycle, customer["id"]), what="second purchase processed"
    )
    await wait_until(
        lambda: value.runtime.metrics.events_handled.labels("value", "value-welcome")._value.get() >= 3,
        what="every stage change seen by value",
    )
    assert len((await value.client.get(f"/v1/customers/{customer['id']}/offers")).json()["items"]) == 1


async def _stage_active(lifecycle, customer_id):
    body = (await lifecycle.client.get(f"/v1/customers/{customer_id}/lifecycle")).json()
    return body.get("stage") == "active"


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
    assert created[0]["status"] == "issued" and created[0]["discount_percent"] == "12.5"
    assert (await value.client.get(f"/v1/offers/{created[1]['id']}")).json()["title"] == "Offer 1"

    first_page = (await value.client.get(f"/v1/customers/{customer['id']}/offers", params={"limit": 2})).json()
    assert [o["title"] for o in first_page["items"]] == ["Offer 2", "Offer 1"]
    rest = (await value.client.get(
        f"/v1/customers/{customer['id']}/offers", params={"limit": 2, "cursor": first_page["next_cursor"]}
    )).json()
    assert [o["title"] for o in rest["items"]] == ["Offer 0"] and rest["next_cursor"] is None

    redeemed = await value.client.post(f"/v1/offers/{created[0]['id']}/redeem")
    assert redeemed.status_code == 200 and redeemed.json()["status"] == "redeemed"
    assert redeemed.json()["redeemed_at"]
    twice = await value.client.post(f"/v1/offers/{created[0]['id']}/redeem")
    assert twice.status_code == 409 and "already redeemed" in twice.json()["detail"]
    assert (await value.client.post("/v1/offers/nope/redeem")).status_code == 404
    assert (await value.client.get("/v1/offers/nope")).status_code == 404
    assert (await value.client.get("/v1/customers/nobody/offers")).status_code == 404

    # An offer past its expiry reads as expired and cannot be redeemed.
    async with value.runtime.db.writer() as session, session.begin():
        await session.execute(
            update(Offer).where(Offer.id == created[1]["id"]).values(expires_at=datetime.now(timezone.utc) - timedelta(days=1))
        )
    assert (await value.client.get(f"/v1/offers/{created[1]['id']}")).json()["status"] == "expired"
    expired = await value.client.post(f"/v1/offers/{created[1]['id']}/redeem")
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]


async def test_invalid_offers_are_refused_naming_the_field(suite):
    identify = await suite.start("identify")
    value = await suite.start("value")
    customer = await _customer(identify, value, "v@example.com")
    base = {"customer_id": customer["id"], "kind": "discount", "title": "T"}
    cases = [
        ({**base, "discount_percent": "0"}, "discount_percent"),
        ({**base, "discount_percent": "150"}, "discount_percent"),
        ({**base, "surprise": True}, "surprise"),
        ({**base, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({**base, "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({**base, "kind": "   "}, "kind"),
        ({**base, "customer_id": "unknown"}, "customer_id"),
        ({k: v for k, v in base.items() if k != "title"}, "title"),
    ]
    for body, field in cases:
        response = await value.client.post("/v1/offers", json=body)
        assert response.status_code == 422, (body, response.text)
        assert any(field in err["field"] for err in response.json()["detail"]), (body, response.json())
