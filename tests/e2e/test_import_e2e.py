"""End to end: the CDNOW sample imported with the CLI through the running suite's
gateway; its events reach lifecycle; a re-run over HTTP records nothing twice.

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


async def test_the_cdnow_sample_imports_with_the_cli_and_flows_on(own_suite):
    result = import_with_the_cli(own_suite)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"100% {ROWS:,}/{ROWS:,} rows" in result.stderr  # the bar ends on the file's rows (no header here)
    import_id = re.search(r"import (\S+): done", result.stdout).group(1)

    async with own_suite.client() as gw:
        job = (await gw.get(f"/v1/imports/{import_id}")).json()
        assert job["status"] == "done"
        assert (job["rows_read"], job["recorded"], job["duplicates"], job["rejected"]) == (ROWS, ROWS, 0, 0)
        assert job["customers_created"] == CUSTOMERS

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
