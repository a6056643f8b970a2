"""End to end, the README tour: a receiver on loopback subscribes through the gateway, a
purchase is made, and the receiver gets it signed (verified with standardwebhooks); the
delivery log shows it (the running suite)."""

from __future__ import annotations

from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when
from tests.services.webhook_support import Receiver, verified


async def test_a_purchase_reaches_a_subscribed_receiver_signed(running_suite):
    async with running_suite.client() as gw, Receiver() as receiver:
        made = await gw.post(
            "/v1/webhooks", json={"url": receiver.url("/hook"), "event_types": ["crm.identify.transaction.*"]}
        )
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["secret"].startswith("whsec_")

        try:
            ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.webhooks")})).json()
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": ada["id"],
                    "amount": "42.00",
                    "currency": "USD",
                    "occurred_at": "2026-12-01T10:00:00Z",
                },
            )
            assert bought.status_code == 201, bought.text

            [call] = await receiver.wait_for("/hook", 1, timeout=30)
            event = verified(hook["secret"], call)
            assert event["type"] == "crm.identify.transaction.recorded"
            assert event["data"]["customer_id"] == ada["id"] and event["data"]["id"] == bought.json()["id"]

            log = await _json_when(
                gw, f"/v1/webhooks/{hook['id']}/deliveries", lambda body: body["items"], "the delivery logged"
            )
            [attempt] = log["items"]
            assert (attempt["outcome"], attempt["status_code"], attempt["event_id"]) == ("delivered", 200, event["id"])
        finally:  # the suite is shared: no subscription left delivering to a receiver that is gone
            assert (await gw.delete(f"/v1/webhooks/{hook['id']}")).status_code in (200, 204)
        refused = await gw.post(
            "/v1/webhooks", json={"url": "https://10.0.0.1/hook", "event_types": ["crm.identify.transaction.*"]}
        )
        assert (refused.status_code, refused.json()["error"]) == (422, "url_not_allowed")
