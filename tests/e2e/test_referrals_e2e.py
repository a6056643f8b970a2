"""End to end through the gateway (the running suite, `valuechain run`): the referral programme
from code to reward. Ada's code signs Bob up, Bob's first purchase qualifies the referral, value
issues Ada her reward in loyalty points, and lifecycle's ledger credits them."""

from __future__ import annotations

from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when


async def test_a_signup_with_a_code_and_a_first_purchase_reward_the_referrer(running_suite):
    async with running_suite.client() as gw:
        terms = await gw.put("/v1/referral-programme", json={"window_days": 30, "reward_points": 500})
        assert terms.status_code == 200, terms.text
        try:
            await _from_code_to_reward(gw)
        finally:  # the suite may be shared with other modules: back to the default terms (no reward)
            await gw.put("/v1/referral-programme", json={"window_days": 90})


async def _from_code_to_reward(gw) -> None:
    assert (await gw.get("/v1/referral-programme")).json()["reward_points"] == 500

    ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.referrer")})).json()
    code = ada["referral_code"]
    assert (await gw.get(f"/v1/customers/{ada['id']}")).json()["referral_code"] == code

    unknown = await gw.post("/v1/customers", json={"email": unique_email("nobody"), "referral_code": "not-it"})
    assert unknown.status_code == 422 and "body.referral_code" in unknown.text
    bob = await gw.post(
        "/v1/customers", json={"email": unique_email("bob.referred"), "referral_code": f"{code[:4]}-{code[4:]}"}
    )
    assert bob.status_code == 201, bob.text
    bob_id = bob.json()["id"]
    assert bob.json()["referred_by"] == ada["id"]

    pending = await _json_when(
        gw, f"/v1/customers/{ada['id']}/referrals", lambda b: len(b["items"]) == 1, "the referral recorded"
    )
    assert pending["items"][0]["status"] == "pending"

    bought = await gw.post(
        "/v1/transactions",
        json={"customer_id": bob_id, "amount": "40", "currency": "USD", "occurred_at": "2026-11-20T10:00:00Z"},
    )
    assert bought.status_code == 201, bought.text

    rewarded = await _json_when(
        gw,
        f"/v1/customers/{ada['id']}/referrals",
        lambda b: b["items"][0]["status"] == "rewarded",
        "the referral rewarded",
    )
    assert rewarded["items"][0]["reward"] == {"template_id": None, "points": 500}
    assert rewarded["items"][0]["transaction_id"] == bought.json()["id"]
    listed = (await gw.get("/v1/referrals", params={"referrer_id": ada["id"]})).json()["items"]
    assert [r["status"] for r in listed] == ["rewarded"]

    # value issues Ada the reward, lifecycle credits the points, and her timeline says why.
    offers = await _json_when(
        gw, f"/v1/customers/{ada['id']}/offers", lambda b: len(b["items"]) == 1, "Ada's reward offer"
    )
    assert (offers["items"][0]["kind"], offers["items"][0]["points"]) == ("points", 500)
    await _json_when(gw, f"/v1/customers/{ada['id']}/loyalty", lambda b: b["balance"] == 500, "points credited")
    timeline = await _json_when(
        gw,
        f"/v1/customers/{ada['id']}/timeline",
        lambda b: any(i["type"] == "crm.network.referral.rewarded" for i in b["items"]),
        "the reward on Ada's timeline",
    )
    [line] = [i["summary"] for i in timeline["items"] if i["type"] == "crm.network.referral.rewarded"]
    assert line == f"Rewarded with 500 points for referring customer {bob_id}"
