"""The console's Value page in a real browser: a marketer launches a campaign with a holdout
(live audience count, launch, results against the holdout), moves an idea along the board,
and reads the value map; a role without write scopes sees no action."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from shared.holdout import in_holdout
from tests.e2e.console import api_key, screenshot, sign_in
from tests.e2e.harness import unique, unique_email
from tests.support import wait_until

# The ratings' day: the value map is read over it alone, a day no other test rates on.
RATED_ON = "1999-07-14"


def _purchase_time() -> datetime:
    """A second of the past no other test buys at: the audience asks for a last purchase
    within a second of it, so only this test's customers match it in the shared suite."""

    return datetime(2012, 1, 1, tzinfo=UTC) + timedelta(seconds=secrets.randbelow(300_000_000))


async def _customers_who_bought_at(gw, bought_at: datetime, *, consenting: int, without_consent: int) -> list[str]:
    """Customers with one purchase at `bought_at`; the first `consenting` of them grant
    marketing consent by email (the others are not in any audience). Their ids."""

    ids = []
    for n in range(consenting + without_consent):
        made = await gw.post("/v1/customers", json={"email": unique_email(f"console-value-{n}")})
        assert made.status_code == 201, made.text
        cid = made.json()["id"]
        bought = await gw.post(
            "/v1/transactions",
            json={"customer_id": cid, "amount": "25", "currency": "USD", "occurred_at": bought_at.isoformat()},
        )
        assert bought.status_code == 201, bought.text
        if n < consenting:
            ids.append(cid)

    async def consents(cid: str) -> bool:  # engage learns of the customer from identify's event
        answer = await gw.post(
            f"/v1/customers/{cid}/consent",
            json={"purpose": "marketing", "channel": "email", "granted": True, "legal_basis": "consent"},
        )
        assert answer.status_code in (201, 404), answer.text
        return answer.status_code == 201

    for cid in ids:
        await wait_until(lambda cid=cid: consents(cid), timeout=20, interval=0.1, what="engage knows the customer")
    return ids


async def _count_reaches(page, expected: int) -> None:
    """The live count shows `expected`: value's read models take the new customers' events
    within a moment; until then "Count again" counts the saved audience once more."""

    count = page.get_by_test_id("audience-count")
    for _ in range(15):
        try:
            await expect(count).to_have_text(str(expected), timeout=1500)
            return
        except AssertionError:
            await page.get_by_role("button", name="Count again").click()
    await expect(count).to_have_text(str(expected), timeout=1500)


async def test_a_marketer_launches_a_campaign_with_a_holdout_and_sees_its_results(console, running_suite):
    bought_at = _purchase_time()
    async with running_suite.client() as gw:
        ours = await _customers_who_bought_at(gw, bought_at, consenting=6, without_consent=1)
    key = await api_key(running_suite, "marketer")
    await sign_in(console, key)
    page = console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Value").click()
    await page.get_by_role("heading", name="Value", level=1).wait_for()

    # An offer of its own, made on the page; the builder offers it at once.
    offer = unique("Ten off ")
    await page.get_by_label("Title", exact=True).fill(offer)
    await page.get_by_label("Percent off", exact=True).fill("10")
    await page.get_by_role("button", name="Create offer").click()
    await page.get_by_text(f"Offer “{offer}” created.").wait_for()

    name = unique("Console spring ")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_role("combobox", name="Offer", exact=True).select_option(label=f"{offer} (10% off)")
    await page.get_by_label("Subject", exact=True).fill("A little something")
    await page.get_by_label("Message", exact=True).fill("Your code: {{ offer_code }}")
    await page.get_by_role("button", name="Create draft").click()
    await page.get_by_role("heading", name=name, level=1).wait_for()
    campaign_id = page.url.rsplit("/", 1)[1]

    # The holdout is drawn by the hash of the campaign's seed and each id: six customers all
    # fall in one group once in 32 launches. Customers are added until both groups have one.
    async with running_suite.client() as gw:
        seed = (await gw.get(f"/v1/campaigns/{campaign_id}")).json()["seed"]
        while len({in_holdout(seed, cid, 0.5) for cid in ours}) < 2:
            ours += await _customers_who_bought_at(gw, bought_at, consenting=1, without_consent=0)

    # The audience: a last purchase within a second of ours. Six (or more) consent; one does not count.
    await page.get_by_label("After", exact=True).fill((bought_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    await page.get_by_label("Before", exact=True).fill((bought_at + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    await _count_reaches(page, len(ours))
    await page.get_by_label(re.compile("^Holdout")).fill("50")
    held = int(len(ours) * 0.5 + 0.5)  # the page's estimate: Math.round(count × share)
    split = f"About {held} held out and {len(ours) - held} offered"
    await expect(page.get_by_test_id("audience-split")).to_have_text(re.compile(split))

    await page.get_by_role("button", name="Launch campaign").click()
    await page.get_by_role("button", name="Yes, launch it").click()
    await page.get_by_role("heading", name="Results against the holdout").wait_for(timeout=60_000)
    await expect(page.get_by_test_id("campaign-status")).to_have_text("running")
    treatment = await page.get_by_test_id("treatment-count").inner_text()
    holdout = await page.get_by_test_id("holdout-count").inner_text()

    async with running_suite.client() as gw:
        campaign = (await gw.get(f"/v1/campaigns/{campaign_id}")).json()
        results = (await gw.get(f"/v1/campaigns/{campaign_id}/results")).json()
        members = (await gw.get(f"/v1/campaigns/{campaign_id}/members", params={"limit": 50})).json()["items"]
    assert campaign["holdout_share"] == 0.5 and campaign["status"] == "running"
    assert campaign["audience"]["last_purchase_after"].startswith(
        (bought_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert sorted(m["customer_id"] for m in members) == sorted(ours)
    groups = [m["group"] for m in members]
    assert (int(treatment), int(holdout)) == (results["treatment"]["customers"], results["holdout"]["customers"])
    assert (int(treatment), int(holdout)) == (groups.count("treatment"), groups.count("holdout"))
    assert int(treatment) + int(holdout) == len(ours)

    # After the launch every treatment customer buys, and one of the holdout: the results show it.
    buyers = [m["customer_id"] for m in members if m["group"] == "treatment"]
    buyers += [m["customer_id"] for m in members if m["group"] == "holdout"][:1]
    after_launch = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    async with running_suite.client() as gw:
        for cid in buyers:
            bought = await gw.post(
                "/v1/transactions",
                json={"customer_id": cid, "amount": "40", "currency": "USD", "occurred_at": after_launch},
            )
            assert bought.status_code == 201, bought.text
    converted = page.get_by_test_id("results-table").get_by_role("row", name=re.compile("^Converted"))
    expected = rf"Converted\s*{groups.count('treatment')}\s*{min(1, groups.count('holdout'))}"
    for _ in range(20):
        await page.get_by_role("button", name="Refresh results").click()
        try:
            await expect(converted).to_have_text(re.compile(expected), timeout=1000)
            break
        except AssertionError:
            continue
    await expect(converted).to_have_text(re.compile(expected))
    async with running_suite.client() as gw:
        results = (await gw.get(f"/v1/campaigns/{campaign_id}/results")).json()
    assert results["treatment"]["converted"] == groups.count("treatment")
    revenue = page.get_by_test_id("results-table").get_by_role("row", name=re.compile("^Revenue per customer"))
    await expect(revenue).to_contain_text(f"{results['treatment']['revenue_per_customer']:.2f}")

    # The uplift is drawn (point and error bar) with its numbers one click away; the members are listed.
    uplift = page.get_by_test_id("uplift-conversion")
    await uplift.locator(".plot .main-svg").first.wait_for()
    await uplift.get_by_text("Show the numbers").click()
    await expect(uplift.get_by_role("row", name=re.compile("Uplift in conversion"))).to_be_visible()
    table = page.get_by_test_id("results-table")
    await expect(table.get_by_role("row", name=re.compile("^Customers"))).to_have_text(
        re.compile(rf"Customers\s*{treatment}\s*{holdout}")
    )
    await expect(page.get_by_test_id("members").get_by_role("row")).to_have_count(len(ours) + 1)
    await screenshot(console, "value-campaign-results")


async def test_the_ideas_board_and_the_value_map(console, running_suite):
    async with running_suite.client() as gw:
        people = [
            (await gw.post("/v1/customers", json={"email": unique_email("console-idea")})).json()["id"]
            for _ in range(3)
        ]

        async def idea(title: str, by: str):
            made = await gw.post(
                "/v1/ideas",
                json={"customer_id": by, "title": title, "description": "From the console test", "product_area": "app"},
            )
            return made.json() if made.status_code == 201 else None

        # Each customer reaches value by its event: until then an idea or a vote of theirs is 422.
        popular = await wait_until(lambda: idea(unique("Gift wrap "), people[0]), what="value knows the customer")
        quiet = await wait_until(lambda: idea(unique("Night delivery "), people[1]), what="value knows the customer")

        async def vote(voter: str):
            voted = await gw.post(f"/v1/ideas/{popular['id']}/votes", json={"customer_id": voter})
            assert voted.status_code in (201, 422), voted.text
            return voted.status_code == 201

        for voter in people[1:]:
            await wait_until(lambda voter=voter: vote(voter), what="value knows the voter")
        competitor = unique("Initrode ")
        assert (await gw.post("/v1/value-map/competitors", json={"name": competitor})).status_code == 201
        ratings = [
            {
                "customer_id": people[0],
                "attribute": attribute,
                "subject": subject,
                "score": score,
                "rated_at": f"{RATED_ON}T10:00:00Z",
            }
            for attribute, subject, score in (
                ("quality", "us", 8),
                ("price", "us", 6),
                ("quality", competitor, 5),
                ("price", competitor, 9),
            )
        ]
        entered = await gw.post("/v1/value-map/ratings:batch", json={"ratings": ratings})
        assert entered.status_code == 201, entered.text

    await sign_in(console, await api_key(running_suite, "marketer"))
    page = console.page
    await console.open("#/value")
    board = page.get_by_test_id("ideas")
    popular_row = board.get_by_role("row", name=re.compile(re.escape(popular["title"])))
    quiet_row = board.get_by_role("row", name=re.compile(re.escape(quiet["title"])))
    await expect(popular_row.get_by_role("cell").nth(3)).to_have_text("2")  # its votes
    # Most votes first: the popular idea's row comes before the quiet one's.
    titles = await board.locator("tbody tr strong").all_inner_texts()
    assert titles.index(popular["title"]) < titles.index(quiet["title"])

    await popular_row.get_by_label(f"New status of “{popular['title']}”").select_option("under_review")
    await popular_row.get_by_role("button", name="Move").click()
    await expect(popular_row.get_by_test_id("idea-status")).to_have_text("under review")
    await expect(quiet_row.get_by_test_id("idea-status")).to_have_text("new")
    async with running_suite.client() as gw:
        assert (await gw.get(f"/v1/ideas/{popular['id']}")).json()["status"] == "under_review"

    # The value map over the ratings' day: us against the competitor, per attribute.
    await page.get_by_label("From (UTC day)").fill(RATED_ON)
    await page.get_by_label("To (UTC day)").fill(RATED_ON)
    await page.get_by_role("button", name="Show the map").click()
    attributes = page.get_by_test_id("value-map-attributes")
    await attributes.locator(".plot .main-svg").first.wait_for()
    await attributes.get_by_text("Show the numbers").click()
    quality = attributes.get_by_role("row", name=re.compile("^quality"))
    await expect(quality).to_contain_text("8.00 (1)")
    await expect(quality).to_contain_text("5.00 (1)")
    await expect(page.get_by_test_id("value-map").locator("figcaption")).to_contain_text("perceived quality")
    await screenshot(console, "value-ideas-and-map")

    # A role that writes nothing here sees the lists and no action.
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(console, await api_key(running_suite, "analyst"))
    await console.open("#/value")
    await page.get_by_test_id("ideas").get_by_role("row").nth(1).wait_for()
    await page.get_by_test_id("campaigns").wait_for()
    assert await page.get_by_role("button", name="Create draft").count() == 0
    assert await page.get_by_role("button", name="Move").count() == 0
    assert await page.get_by_role("button", name="Create offer").count() == 0
