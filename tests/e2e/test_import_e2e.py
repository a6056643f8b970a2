"""End to end: the CDNOW sample imported through the console in a real browser (the bar
reaches 100%), then refitted there (the Pareto curve); the same file again with the CLI and
over HTTP records nothing twice; its events reach lifecycle.

This module has a suite of its own (`own_suite`), not the shared `running_suite`: its 2,357
imported customers and 10,919 purchases would enter every other module's global reads (the
1997 cohorts, survival, sweeps, customer lists) and keep every service's consumers busy for
minutes after the test, slowing and unsettling the modules after it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.console import (
    api_key,
    expected_cohort_cells,
    open_console,
    save_failure,
    screenshot,
    shown_cohort_cells,
    sign_in,
)
from tests.e2e.harness import ROOT
from tests.support import cdnow_dir, wait_until

CDNOW_SAMPLE = cdnow_dir() / "CDNOW_sample.txt"
COLUMNS = "master_id,sample_id,date,cds,dollars"
MAPPING = {"master_id": "customer_external_id", "date": "occurred_at", "dollars": "amount"}
ROWS, CUSTOMERS = 6919, 2357


def run_import(path: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None):
    """`valuechain import transactions <path> <args>`, as a user types it."""

    return subprocess.run(
        [sys.executable, "-m", "valuechain", "import", "transactions", str(path), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def import_with_the_cli(suite, *extra: str) -> subprocess.CompletedProcess:
    return run_import(
        CDNOW_SAMPLE,
        "--columns",
        COLUMNS,
        "--mapping",
        json.dumps(MAPPING),
        "--currency",
        "USD",
        "--create-customers",
        "--gateway",
        suite.gateway_url,
        *extra,
        env={**os.environ, "VALUECHAIN_ADMIN_API_KEY": suite.admin_key},
    )


@pytest.fixture
async def own_console(browser, own_suite, request):
    async with open_console(browser, own_suite) as console:
        yield console
        await save_failure(console, request.node)


async def test_the_cdnow_sample_imports_through_the_console_with_the_bar_reaching_100(own_console, own_suite):
    """The first import of the module: a manager uploads the file, maps its columns from the
    preview and watches the bar."""

    await sign_in(own_console, await api_key(own_suite, "manager"))
    page = own_console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Import").click()
    await page.get_by_label("File (CSV or NDJSON)").set_input_files(str(CDNOW_SAMPLE))
    preview = page.get_by_test_id("preview")
    await preview.get_by_role("cell", name="29.33").wait_for()  # customer 00004's first purchase
    assert not await page.get_by_label("First line names the columns").is_checked()  # no header: guessed
    await page.get_by_label("Import column column_1 as").select_option("customer_external_id")
    await page.get_by_label("Import column column_3 as").select_option("occurred_at")
    await page.get_by_label("Import column column_5 as").select_option("amount")
    await page.get_by_label("Currency of rows without one").fill("USD")
    await page.get_by_role("button", name="Import", exact=True).click()
    status = page.get_by_test_id("import-status")
    await status.get_by_text("(done)").wait_for(timeout=180_000)
    assert (await status.inner_text()).startswith(f"100% — {ROWS:,} of {ROWS:,} rows read: {ROWS:,} recorded")
    bar = page.get_by_test_id("import-progress")
    assert await bar.evaluate("bar => bar.value === bar.max")
    await screenshot(own_console, "import-cdnow-done")

    async with own_suite.client() as gw:
        job = (await gw.get("/v1/imports", params={"limit": 1})).json()["items"][0]
        assert (job["rows_read"], job["recorded"], job["duplicates"], job["rejected"]) == (ROWS, ROWS, 0, 0)
        assert job["customers_created"] == CUSTOMERS
        assert job["mapping"] == {"column_1": "customer_external_id", "column_3": "occurred_at", "column_5": "amount"}


async def test_a_refit_in_the_console_draws_the_pareto_curve(own_console, own_suite):
    await sign_in(own_console, await api_key(own_suite, "manager"))
    page = own_console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Portfolio").click()
    # Right after the import every consumer is still busy with its purchases: a slower first answer.
    refit = page.get_by_role("button", name="Refit the model")
    await refit.wait_for(timeout=60_000)
    await refit.click()
    await page.get_by_test_id("refit-status").get_by_text("Refit done").wait_for(timeout=180_000)
    await page.get_by_test_id("model-summary").get_by_text(f"on {CUSTOMERS:,} customers").wait_for()
    chart = page.get_by_test_id("pareto-chart")
    await chart.locator("svg .scatterlayer path.js-line").first.wait_for()  # Plotly drew the curve
    async with own_suite.client() as gw:
        pareto = (await gw.get("/v1/portfolio/pareto")).json()
    top20 = next(share for share in pareto["shares"] if share["top"] == 0.2)
    shown = float((await page.get_by_test_id("top20-share").locator(".big").inner_text()).rstrip("%"))
    assert abs(shown - 100 * top20["revenue_share"]) <= 0.05
    # The numbers behind the chart, one click away.
    await chart.get_by_text("Show the numbers").click()
    assert await chart.get_by_role("row").count() == 1 + len(pareto["shares"])
    await chart.get_by_text("Show the numbers").click()
    # The kinds' counts, from the segments view identify stored at the refit.
    kinds = page.get_by_role("table", name="Customers of each kind")
    async with own_suite.client() as gw:
        counts = (await gw.get("/v1/portfolio/segments")).json()["kinds"]
    row = kinds.get_by_role("row").filter(has_text="High future lifetime value")
    assert (await row.get_by_role("cell").nth(1).inner_text()).replace(",", "") == str(counts["high_future_value"])
    await screenshot(own_console, "portfolio")


async def test_the_cdnow_cohort_heatmap_matches_the_api_cell_for_cell(own_console, own_suite):
    window = {"by": "month", "from": "1997-01", "to": "1997-03"}  # the sample's three cohorts

    async def settled():  # lifecycle has every imported purchase once its cohorts hold every customer
        body = (await gw.get("/v1/lifecycle/cohorts", params=window)).json()
        return body if sum(cohort["size"] for cohort in body["cohorts"]) == CUSTOMERS else None

    async with own_suite.client() as gw:
        api = await wait_until(settled, timeout=180, interval=0.5, what="lifecycle's CDNOW cohorts")
    await sign_in(own_console, await api_key(own_suite, "analyst"))
    page = own_console.page
    await own_console.open("#/lifecycle?cohort_from=1997-01&cohort_to=1997-03")
    figure = page.get_by_test_id("cohort-heatmap")
    await figure.locator(".plot .heatmaplayer").wait_for()  # Plotly drew the heatmap
    await figure.get_by_text("Show the numbers").click()
    shown = await shown_cohort_cells(figure, "cohort-1997")
    assert len(shown) == 3 * 2 + sum(len(cohort["months"]) for cohort in api["cohorts"])
    assert shown == expected_cohort_cells(api)
    await screenshot(own_console, "cohorts-cdnow")


async def test_the_cdnow_sample_again_with_the_cli_records_nothing_twice_and_flows_on(own_suite):
    result = import_with_the_cli(own_suite)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"100% {ROWS:,}/{ROWS:,} rows" in result.stderr  # the bar ends on the file's rows (no header here)
    import_id = re.search(r"import (\S+): done", result.stdout).group(1)

    async with own_suite.client() as gw:
        job = (await gw.get(f"/v1/imports/{import_id}")).json()
        assert job["status"] == "done"
        # The console's import (above) recorded them all: every row is a duplicate now.
        assert (job["rows_read"], job["recorded"], job["duplicates"], job["rejected"]) == (ROWS, 0, ROWS, 0)
        assert job["customers_created"] == 0

        # Customer 00004's three purchases, and the stage lifecycle gave it from the events.
        customers, cursor = {}, None
        while True:
            page = (
                await gw.get("/v1/customers", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
            ).json()
            customers.update((c["external_id"], c) for c in page["items"])
            if not (cursor := page["next_cursor"]):
                break
        assert len(customers) == CUSTOMERS
        ada = customers["00004"]
        assert ada["purchase_count"] == 4
        bought = (await gw.get(f"/v1/customers/{ada['id']}/transactions")).json()["items"]
        assert [(t["occurred_at"][:10], t["amount"]) for t in reversed(bought)] == [
            ("1997-01-01", "29.33"),
            ("1997-01-18", "29.73"),
            ("1997-08-02", "14.96"),
            ("1997-12-12", "26.48"),
        ]

        async def staged():
            response = await gw.get(f"/v1/customers/{ada['id']}/lifecycle")
            return response.status_code == 200 and response.json()["stage"] not in ("prospect",) and response.json()

        lifecycle = await wait_until(staged, timeout=120, interval=0.2, what="lifecycle to follow the import")
        assert lifecycle["stage"] in ("new", "active", "loyal", "at_risk", "churned", "won_back")

        # The same file again, over HTTP through the gateway: nothing is recorded twice.
        with open(CDNOW_SAMPLE, "rb") as file:
            again = await gw.post(
                "/v1/imports",
                files={"file": (CDNOW_SAMPLE.name, file)},
                data={
                    "columns": COLUMNS,
                    "mapping": json.dumps(MAPPING),
                    "currency": "USD",
                    "create_customers": "true",
                },
            )
        assert again.status_code == 202, again.text

        async def finished():
            state = (await gw.get(f"/v1/imports/{again.json()['id']}")).json()
            return state if state["status"] != "running" else None

        rerun = await wait_until(finished, timeout=300, interval=0.2, what="the re-run")
        assert (rerun["status"], rerun["recorded"], rerun["duplicates"], rerun["customers_created"]) == (
            "done",
            0,
            ROWS,
            0,
        )


async def test_a_multi_megabyte_upload_goes_through_the_gateway(own_suite, tmp_path):
    # 4 MB: a few thousand rows, each with a long column the mapping leaves out.
    rows = ["customer_external_id,occurred_at,amount,currency,note"]
    rows += [f"big-{i % 50},2026-01-{1 + i % 28:02d},{i % 90}.25,USD,{'x' * 1000}" for i in range(4000)]
    path = Path(tmp_path) / "big.csv"
    path.write_text("\n".join(rows) + "\n")
    assert path.stat().st_size > 4_000_000
    result = run_import(
        path, "--create-customers", "--gateway", own_suite.gateway_url, "--api-key", own_suite.admin_key
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "4,000 rows read, 4,000 recorded" in result.stdout
    assert "100% 4,000/4,000 rows" in result.stderr  # the header line is not a row

    refused = run_import(
        path,
        "--mapping",
        "{nope",
        "--gateway",
        own_suite.gateway_url,
        "--api-key",
        own_suite.admin_key,
        timeout=60,
    )
    assert refused.returncode != 0 and "not JSON" in refused.stderr
