"""The console's customers: a marketer finds a customer by a part of their name as they type,
opens the customer and sees the timeline; whatever a customer is called shows as text."""

from __future__ import annotations

from playwright.async_api import expect

from tests.e2e.console import api_key, screenshot, sign_in
from tests.e2e.harness import unique, unique_email
from tests.support import wait_until


async def make_customer(suite, name: str, *, purchase: bool = False) -> dict:
    async with suite.client() as gw:
        made = await gw.post("/v1/customers", json={"name": name, "email": unique_email("console")})
        assert made.status_code == 201, made.text
        customer = made.json()
        if purchase:
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": customer["id"],
                    "amount": "42.50",
                    "currency": "USD",
                    "occurred_at": "2026-11-20T10:00:00Z",
                    "external_id": unique("console-order-"),
                },
            )
            assert bought.status_code == 201, bought.text

            async def on_the_timeline():
                answer = await gw.get(f"/v1/customers/{customer['id']}/timeline")  # 404 until engage knows them
                return answer.status_code == 200 and len(answer.json()["items"]) >= 2

            await wait_until(on_the_timeline, timeout=30, interval=0.2, what="the purchase on the timeline")
        return customer


async def test_a_marketer_finds_a_customer_by_part_of_the_name_and_sees_the_timeline(console, running_suite):
    surname = unique("Quill")
    customer = await make_customer(running_suite, f"Ada {surname}", purchase=True)
    await sign_in(console, await api_key(running_suite, "marketer"))
    page = console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Customers").click()
    search = page.get_by_label("Search customers")
    # As a person types it: a key at a time, each keystroke a search (debounced) of `q`.
    await search.press_sequentially(surname[2:12].lower(), delay=40)
    link = page.get_by_test_id("results").get_by_role("link", name=f"Ada {surname}")
    await link.wait_for()
    # The answer to the last keystroke: the header and Ada alone (a shorter prefix's may match more).
    await expect(page.get_by_test_id("results").get_by_role("row")).to_have_count(2)

    await link.click()
    await page.get_by_role("heading", level=1, name=f"Ada {surname}").wait_for()
    assert f"#/customers/{customer['id']}" in page.url
    timeline = page.get_by_test_id("timeline")
    await timeline.get_by_text("crm.identify.transaction.recorded").wait_for()
    await timeline.get_by_text("crm.identify.customer.created").wait_for()
    for section in ("Profile", "Scores", "Stage history", "Timeline", "Offers", "Consent", "Feedback"):
        await page.get_by_role("heading", level=2, name=section).wait_for()
    await screenshot(console, "customer-page")


async def test_a_customer_named_like_a_script_shows_as_text(console, running_suite):
    tag = unique("xss")
    name = f"<script>alert(1)</script><img src=x onerror=alert(2)>{tag}"
    customer = await make_customer(running_suite, name)
    dialogs: list[str] = []
    console.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(console, await api_key(running_suite, "manager"))
    page = console.page
    await console.open(f"#/customers?q={tag}")
    await page.get_by_label("Search customers").fill(tag)
    await page.get_by_test_id("results").get_by_role("link", name=name).wait_for()
    await console.open(f"#/customers/{customer['id']}")
    heading = page.get_by_role("heading", level=1)
    await heading.get_by_text(tag).wait_for()
    assert await heading.inner_text() == name  # the markup is the customer's name, shown as text
    assert await page.locator("main script, main img").count() == 0
    assert dialogs == []


async def test_a_manager_merges_a_duplicate_from_the_customer_page(console, running_suite):
    name = f"Grace {unique('Hopper')}"
    survivor = await make_customer(running_suite, name)
    twin = await make_customer(running_suite, name)  # the same name: a merge candidate
    await sign_in(console, await api_key(running_suite, "manager"))
    page = console.page
    page.on("dialog", lambda dialog: dialog.accept())  # "Merge … into …?"
    await console.open(f"#/customers/{survivor['id']}")
    candidates = page.get_by_role("table", name="Merge candidates")
    row = candidates.get_by_role("row").filter(has_text=twin["email"])
    await row.get_by_text("same name").wait_for()
    await row.get_by_role("button", name=f"Merge {name} into this customer").click()
    await row.get_by_text("Merged").wait_for()
    async with running_suite.client() as gw:
        merged = (await gw.get(f"/v1/customers/{twin['id']}")).json()
    assert merged["merged_into"] == survivor["id"]
