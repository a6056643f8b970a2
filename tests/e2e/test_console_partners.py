"""The Partners page in a real browser: a manager subscribes a webhook through the console's
form to a receiver on loopback (the shared suite allows 127.0.0.1, tests/e2e/harness.py), a
customer is made, the subscription's delivery log shows the delivery, and a retry by hand
delivers it again."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.e2e.console import api_key, refresh_until, screenshot, sign_in
from tests.e2e.harness import unique_email
from tests.services.webhook_support import Receiver, verified


async def test_a_manager_subscribes_a_webhook_and_sees_a_delivery(console, running_suite):
    await sign_in(console, await api_key(running_suite, "manager"))
    page = console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Partners").click()
    await page.get_by_role("heading", name="Partners", level=1).wait_for()

    hook_id = None
    async with running_suite.client() as gw, Receiver() as receiver:
        try:
            await page.get_by_label("URL", exact=True).fill(receiver.url("/console-hook"))
            await page.get_by_label("Event types", exact=True).fill("crm.identify.customer.created")
            await page.get_by_label("Description", exact=True).fill("console journey")
            await page.get_by_role("button", name="Subscribe", exact=True).click()

            secret = await page.get_by_label("Signing secret").input_value()
            assert secret.startswith("whsec_")
            receiver.signed_by("/console-hook", secret)  # every delivery is verified with it
            opened = page.get_by_role("link", name=re.compile("^Open the subscription"))
            hook_id = (await opened.get_attribute("href")).rsplit("/", 1)[1]
            await opened.click()
            await page.get_by_role("heading", name="Webhook subscription", level=1).wait_for()
            await expect(page.get_by_test_id("subscription")).to_contain_text("crm.identify.customer.created")
            assert await page.get_by_label("Signing secret").count() == 0  # shown once, on create

            made = await gw.post("/v1/customers", json={"email": unique_email("console.webhook")})
            assert made.status_code == 201, made.text
            calls = await receiver.wait_for("/console-hook", 1, timeout=30)
            [event] = [e for e in (verified(secret, c) for c in calls) if e["data"]["id"] == made.json()["id"]]

            log = page.get_by_role("table", name="Delivery attempts, newest first")
            row = log.get_by_role("row").filter(has_text=event["id"]).filter(has_text="delivered")
            await refresh_until(row, page.get_by_role("button", name="Refresh the log"), timeout=30.0)
            await expect(row).to_contain_text("200")

            # Retry that delivery by hand: a second attempt at the same event, also in the log.
            await row.get_by_role("button", name=re.compile("^Retry attempt 1 of event")).click()
            await expect(page.get_by_text(f"Retried event {event['id']}: delivered (200).")).to_be_visible()
            retried = log.get_by_role("row").filter(has_text=event["id"]).filter(has_text="delivered")
            await expect(retried).to_have_count(2)
            await screenshot(console, "partners-webhook-delivery")
        finally:  # the suite is shared: no subscription left delivering to a receiver that is gone
            if hook_id:
                assert (await gw.delete(f"/v1/webhooks/{hook_id}")).status_code in (204, 404)
