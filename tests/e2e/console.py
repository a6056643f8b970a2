"""The console in a real browser: headless Chromium from Debian's `chromium` package, driven
by Playwright for Python (its own browser download cannot be fetched here, so `executable_path`
points at the installed Chromium; `.ci/run` installs it with apt-get where it is missing).

Fixtures (tests/e2e/conftest.py): `browser`, one Chromium for the whole e2e package, and
`console`, a fresh browser context (its own session storage) per test on the shared suite,
from `open_console` here (a module with a suite of its own opens one on that), whose page
fails the test on any script error or Content-Security-Policy violation. Helpers here: `api_key` makes a
key of a role, `sign_in` pastes it, `screenshot` saves a picture under the test output.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import ROOT, unique

# Where journeys' screenshots go; `make screenshots`-style refreshes of docs/images copy from here.
OUTPUT = Path(os.environ.get("VALUECHAIN_TEST_OUTPUT", ROOT / "var" / "test-output")) / "console"
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    configured = os.environ.get("VALUECHAIN_CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class ConsolePage:
    """A Playwright page on the console, and what went wrong in it."""

    page: Page
    base_url: str
    problems: list[str] = field(default_factory=list)

    async def open(self, hash_path: str = "") -> None:
        await self.page.goto(f"{self.base_url}/console/{hash_path}")


@asynccontextmanager
async def open_console(browser, suite) -> AsyncIterator[ConsolePage]:
    """A fresh browser context (its own session storage) on `suite`'s console. Any script
    error or Content-Security-Policy violation in the page fails the test when it ends."""

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    # 15 s was not enough for a page on a CI machine running at half speed with both test workers busy.
    page.set_default_timeout(30_000)
    console = ConsolePage(page, suite.gateway_url)
    page.on("pageerror", lambda error: console.problems.append(f"script error: {error}"))

    def on_message(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            console.problems.append(f"CSP: {message.text}")

    page.on("console", on_message)
    try:
        yield console
    finally:
        await context.close()
    assert console.problems == [], console.problems


async def refresh_until(locator, refresh, *, timeout: float) -> None:
    """Click `refresh` until `locator` shows, as a user reloading a list would."""

    deadline = time.monotonic() + timeout
    while True:
        try:
            await expect(locator).to_be_visible(timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await refresh.click()


async def save_failure(console: ConsolePage, item) -> None:
    """What the page showed when the test failed: `<test name>.failed.png` beside the journeys'."""

    report = getattr(item, "report_call", None)
    if report is not None and report.failed:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", item.name)
        await console.page.screenshot(path=str(OUTPUT / f"{name}.failed.png"), full_page=True)


async def api_key(suite, role: str, **extra) -> str:
    """A new API key of `role` in the suite, made by its admin."""

    async with suite.client() as gw:
        made = await gw.post("/v1/api-keys", json={"name": unique(f"console-{role}-"), "role": role, **extra})
        assert made.status_code == 201, made.text
        return made.json()["key"]


async def sign_in(console: ConsolePage, key: str) -> None:
    """Sign in on the sign-in page with a pasted key; back once the navigation is drawn."""

    page = console.page
    await console.open()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("navigation", name="Pages").get_by_role("link").first.wait_for()


async def screenshot(console: ConsolePage, name: str, *, full_page: bool = True) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    await console.page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 1000
    return path


def shown_share(share: float) -> str:
    """The Lifecycle page's rounding of a cohort share (half up to a tenth of a percent)."""

    return f"{math.floor(share * 1000 + 0.5) / 10:.1f}%"


def expected_cohort_cells(cohorts: dict) -> list[list]:
    """[test id, text, share] of each cell of the cohort table, from GET /v1/lifecycle/cohorts."""

    cells: list[list] = []
    for cohort in cohorts["cohorts"]:
        name = cohort["cohort"]
        cells += [[f"cohort-{name}", name, None], [f"cohort-{name}-size", str(cohort["size"]), None]]
        for month in cohort["months"]:
            cells.append(
                [f"cohort-{name}-{month['k']}", f"{shown_share(month['share'])} ({month['customers']})", month["share"]]
            )
    return cells


async def shown_cohort_cells(figure, prefix: str = "cohort-") -> list[list]:
    """[test id, text, share] of each cell of the page's cohort table (open under "Show the numbers")."""

    shown = await figure.locator(f"table [data-testid^='{prefix}']").evaluate_all(
        "nodes => nodes.map(n => [n.dataset.testid, n.textContent, n.dataset.share ?? null])"
    )
    return [[testid, text, None if share is None else float(share)] for testid, text, share in shown]


def require_chromium() -> str:
    path = chromium_path()
    if path is None and os.environ.get("CI"):
        pytest.fail("CI needs Chromium for the console's tests: .ci/run installs Debian's `chromium`")
    if path is None:
        pytest.skip("no Chromium here: `apt-get install chromium` (.ci/run does), or set VALUECHAIN_CHROMIUM")
    return path
