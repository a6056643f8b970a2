"""The console's Lifecycle page in a real browser: an agent answers a ticket before its SLA
from the ticket queue, and the cohort heatmap's table shows GET /v1/lifecycle/cohorts cell for
cell. The data is each test's own: a ticket in a queue of its own under an SLA policy of its
own, and cohorts in 1993, a year no other test's purchases fall in (and after test_lifecycle_e2e's
survival date, 1991-06, which counts every earlier first purchase)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

from tests.e2e.console import api_key, expected_cohort_cells, screenshot, shown_cohort_cells, sign_in
from tests.e2e.harness import unique, unique_email
from tests.support import wait_until

PRIORITIES = ("low", "normal", "high", "urgent")


async def _ticket(gw, **fields) -> dict:
    """Open a ticket once lifecycle has learnt of its customer (identify's event)."""

    async def opened():
        created = await gw.post("/v1/tickets", json=fields)
        if created.status_code == 422:  # lifecycle does not know the customer yet
            return None
        assert created.status_code == 201, created.text
        return created.json()

    return await wait_until(opened, timeout=30, interval=0.05, what="lifecycle knows the customer")


async def test_an_agent_answers_a_ticket_before_its_sla(console, running_suite):
    subject, queue = unique("Parcel missing "), unique("console-queue-")
    async with running_suite.client() as gw:
        customer = await gw.post("/v1/customers", json={"email": unique_email("ticket."), "name": "Ada Lovelace"})
        assert customer.status_code == 201, customer.text
        targets = [{"priority": p, "first_response_minutes": 120, "resolution_minutes": 480} for p in PRIORITIES]
        policy = await gw.post("/v1/sla-policies", json={"name": unique("Console SLA "), "targets": targets})
        assert policy.status_code == 201, policy.text
        ticket = await _ticket(
            gw,
            customer_id=customer.json()["id"],
            subject=subject,
            channel="chat",
            queue=queue,
            sla_policy_id=policy.json()["id"],
        )
    due = datetime.fromisoformat(ticket["first_response_due_at"])

    await sign_in(console, await api_key(running_suite, "agent"))
    page = console.page
    await page.clock.install()  # the page's timers under the test's hand: the 30 s refresh, below
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Lifecycle").click()
    await page.get_by_role("heading", name="Ticket queue").wait_for()
    await page.get_by_label("Queue", exact=True).fill(queue)
    await page.get_by_role("button", name="Show tickets").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=subject))
    countdown = row.locator("time").first  # time to the first response
    await countdown.wait_for()
    assert re.fullmatch(r"1 h 5\d min left|2 h left", await countdown.inner_text()), await countdown.inner_text()
    # Every 30 s the countdowns are repainted: ten minutes later the same cell says so.
    await page.clock.fast_forward("10:00")
    await page.wait_for_function(
        "node => /^1 h 4\\d min left$/.test(node.textContent)", arg=await countdown.element_handle()
    )

    await row.get_by_role("link", name=subject).click()
    await page.get_by_role("heading", name=f"Ticket: {subject}").wait_for()
    await page.get_by_label("Answer", exact=True).fill("We found it: it arrives tomorrow.")
    await page.get_by_role("button", name="Send answer").click()
    await page.get_by_role("status").filter(has_text="Answer sent.").wait_for()
    await page.get_by_text("answered in time").wait_for()
    await page.get_by_test_id("ticket-comment").filter(has_text="it arrives tomorrow").wait_for()
    await screenshot(console, "lifecycle-ticket-answered")

    async with running_suite.client() as gw:
        answered = (await gw.get(f"/v1/tickets/{ticket['id']}")).json()
    assert answered["first_response_at"] is not None
    assert datetime.fromisoformat(answered["first_response_at"]) <= due  # the SLA was met
    assert answered["first_response_breached_at"] is None and not answered["escalated_at"]


async def test_the_cohort_heatmap_table_matches_the_api_cell_for_cell(console, running_suite):
    # Months each customer bought in: cohorts 1993-03 (3 customers) and 1993-04 (2), to 1993-06.
    bought = [("03", "04", "06"), ("03",), ("03", "05"), ("04", "05"), ("04",)]
    tag = unique("console-cohort")
    window = {"by": "month", "from": "1993-01", "to": "1993-12"}
    async with running_suite.client() as gw:

        async def customer_buying(n, months):
            made = await gw.post("/v1/customers", json={"email": unique_email(f"cohort{n}.")})
            assert made.status_code == 201, made.text
            for month in months:
                paid = await gw.post(
                    "/v1/transactions",
                    json={
                        "customer_id": made.json()["id"],
                        "amount": "10.00",
                        "currency": "USD",
                        "occurred_at": f"1993-{month}-10T12:00:00Z",
                        "external_id": f"{tag}-{n}-{month}",
                    },
                )
                assert paid.status_code == 201, paid.text

        await asyncio.gather(*(customer_buying(n, months) for n, months in enumerate(bought)))

        async def filled():
            body = (await gw.get("/v1/lifecycle/cohorts", params=window)).json()
            cells = sum(c["months"][k]["customers"] for c in body["cohorts"] for k in range(len(c["months"])))
            return body if cells >= 9 else None  # 9 customer-months

        await wait_until(filled, timeout=60, what="the 1993 cohorts in lifecycle")

    await sign_in(console, await api_key(running_suite, "analyst"))
    page = console.page
    await console.open("#/lifecycle")
    await page.get_by_label("First cohort (YYYY-MM)").fill("1993-01")
    await page.get_by_label("Last cohort (YYYY-MM)").fill("1993-12")
    await page.get_by_role("button", name="Show cohorts").click()
    figure = page.get_by_test_id("cohort-heatmap")
    await figure.locator("figcaption", has_text="cohorts 1993-03 to 1993-04").wait_for()
    await figure.locator(".plot .heatmaplayer").wait_for()  # Plotly drew the heatmap
    await figure.get_by_text("Show the numbers").click()
    shown = await shown_cohort_cells(figure, "cohort-1993")
    async with running_suite.client() as gw:
        api = (await gw.get("/v1/lifecycle/cohorts", params=window)).json()
    assert shown == expected_cohort_cells(api)
    assert [c["cohort"] for c in api["cohorts"]] == ["1993-03", "1993-04"]
    assert [m["customers"] for m in api["cohorts"][0]["months"]] == [3, 1, 1, 1]
    await screenshot(console, "lifecycle-cohort-heatmap")
