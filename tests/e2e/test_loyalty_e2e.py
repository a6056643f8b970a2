"""End to end through the gateway: a purchase earns loyalty points, they buy one of value's
offers, and the points reach the timeline and the 360 view."""

from __future__ import annotations

from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_points_earned_by_a_purchase_buy_an_offer_from_value(running_suite):
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"email": "points-e2e@example.com"})).json()
        cid = customer["id"]
        bought = await gw.post(
            "/v1/transactions",
            json={"customer_id": cid, "amount": "180", "currency": "USD", "occurred_at": "2026-11-20T10:00:00Z"},
        )
        assert bought.status_code == 201, bought.text
        # The default programme: 1 point per unit, bronze from 0.
        body = await _json_when(gw, f"/v1/customers/{cid}/loyalty", lambda b: b["balance"] == 180, "points earned")
        assert body["tier"] == "bronze" and body["items"][0]["kind"] == "earned"

        reward = await gw.post(
            "/v1/offer-templates",
            json={"kind": "percent_off", "title": "20% off", "percent_off": "20", "points_price": 150},
        )
        assert reward.status_code == 201, reward.text
        template_id = reward.json()["id"]

        async def redeemed():
            response = await gw.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"template_id": template_id})
            return response.json() if response.status_code == 201 else None

        redemption = await wait_until(redeemed, what="lifecycle knows the reward")
        assert redemption["balance"] == 30
        offers = await _json_when(
            gw,
            f"/v1/customers/{cid}/offers",
            lambda b: any(o.get("template_id") == template_id for o in b["items"]),
            "value issued the offer",
        )
        assert any(o["kind"] == "percent_off" for o in offers["items"])
        short = await gw.post(f"/v1/customers/{cid}/loyalty/redemptions", json={"template_id": template_id})
        assert short.status_code == 409 and short.json()["error"] == "insufficient_points"

        view = await _json_when(
            gw,
            f"/v1/customers/{cid}/360",
            lambda b: (
                b["loyalty"] is not None
                and b["loyalty"]["balance"] == 30
                and any(t["type"] == "crm.lifecycle.loyalty.points_changed" for t in b["timeline"])
            ),
            "loyalty in the 360 view and on the timeline",
        )
        assert view["loyalty"]["tier"] == "bronze"
        programme = await gw.get("/v1/loyalty/programme")
        assert programme.status_code == 200 and programme.json()["version"] == 0
