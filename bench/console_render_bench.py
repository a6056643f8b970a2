"""The console's portfolio page in a real browser: from the start of a load to every chart drawn.

The page draws identify's stored views, whose size does not grow with the portfolio (21
Lorenz points, 11 segments, 4 kinds' counts), so the browser's share of the render is the
same over a thousand customers as over a million; the reads behind it over 1,000,000 are
console_bench's. This bench starts a scratch suite (the e2e harness, SQLite), gives it a
small portfolio and a refit, then loads `#/portfolio` in headless Chromium (Debian's, as the
tests drive it): `--repeat` cold loads (a new browser context each: plotly.min.js fetched
and parsed again) and as many warm reloads, each timed from the navigation's start to the
Pareto curve and both segment charts drawn. Medians are quoted.

    .venv/bin/python -m bench.console_render_bench [--customers 200] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import Page, async_playwright

from tests.e2e.console import require_chromium
from tests.e2e.harness import scratch_suite, unique

DRAWN = (
    "[data-testid=pareto-chart] .scatterlayer path.js-line",
    "[data-testid=segments-count-chart] .barlayer path",
    "[data-testid=segments-value-chart] .barlayer path",
)


async def portfolio(gw: httpx.AsyncClient, customers: int) -> None:
    """`customers` customers with one to four purchases each, then a refit (it stores the views)."""

    semaphore = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        async with semaphore:
            made = await gw.post("/v1/customers", json={"name": f"Render {n}", "email": f"{unique('r')}@example.com"})
            made.raise_for_status()
            for k in range(1 + n % 4):
                bought = await gw.post(
                    "/v1/transactions",
                    json={
                        "customer_id": made.json()["id"],
                        "amount": f"{10 + (n * 7 + k * 13) % 90}.50",
                        "currency": "USD",
                        "occurred_at": f"2026-{1 + (n + k * 3) % 10:02d}-{1 + k * 5:02d}T10:00:00Z",
                        "external_id": unique("render-"),
                    },
                )
                bought.raise_for_status()

    await asyncio.gather(*(one(n) for n in range(customers)))
    await asyncio.sleep(2)  # identify's summaries follow its own events
    refit = (await gw.post("/v1/portfolio/refits", json={})).json()
    while (state := (await gw.get(f"/v1/portfolio/refits/{refit['id']}")).json())["status"] in ("queued", "running"):
        await asyncio.sleep(0.3)
    if state["status"] != "done":
        raise RuntimeError(f"the refit failed: {state}")


async def drawn(page: Page) -> None:
    for selector in DRAWN:
        await page.locator(selector).first.wait_for(timeout=30_000)


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/console/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_test_id("role").wait_for()


async def measure(base: str, key: str, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=require_chromium(), args=["--no-sandbox"])
        for _ in range(repeat):
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await sign_in(page, base, key)
            await page.goto("about:blank")
            start = time.perf_counter()
            await page.goto(f"{base}/console/#/portfolio")
            await drawn(page)
            times["cold"].append(1000 * (time.perf_counter() - start))
            start = time.perf_counter()
            await page.reload()
            await drawn(page)
            times["warm"].append(1000 * (time.perf_counter() - start))
            await context.close()
        await browser.close()
    return times


async def prepared_and_measured(suite, customers: int, repeat: int) -> dict[str, list[float]]:
    async with suite.client() as gw:
        await portfolio(gw, customers)
    return await measure(suite.gateway_url, suite.admin_key, repeat)


def run(customers: int, repeat: int) -> None:
    # scratch_suite makes (and drops) its databases with asyncio.run: outside this loop.
    with tempfile.TemporaryDirectory() as tmp, scratch_suite(Path(tmp) / "var", "render") as suite:
        times = asyncio.run(prepared_and_measured(suite, customers, repeat))
    print(f"portfolio page, {customers} customers, {repeat} loads each (ms, navigation start to every chart drawn)")
    print("| load | median | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    run(args.customers, args.repeat)


if __name__ == "__main__":
    main()
