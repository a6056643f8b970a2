"""The OpenAPI document is what the API does: schemathesis, every check, through the gateway.

A scratch suite (the five services, NATS and the gateway, started by the e2e
harness on free ports and a temporary data directory: never anyone's data) is
fuzzed through the gateway with the admin key, from the gateway's merged
document. Deterministic (`--generation-deterministic`, so the same cases every
run), bounded (`--max-examples`), every check (schemathesis' default; the few
per-operation exceptions are in schemathesis.toml, each with its reason), and
the run must find nothing.

Run it alone:   .venv/bin/python -m pytest -q -p no:cacheprovider tests/contract
More examples:  VALUECHAIN_FUZZ_EXAMPLES=50 (same command)
A failure prints schemathesis' report: each failing operation, the check, the
response, and a curl command that reproduces it against a running suite.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningSuite, postgres_databases

HERE = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("VALUECHAIN_FUZZ_EXAMPLES", "10"))
PHASES = os.environ.get("VALUECHAIN_FUZZ_PHASES", "examples,coverage,fuzzing")
SEED = 20261204


@pytest.fixture(scope="module")
def scratch_suite(tmp_path_factory):
    urls, drops = asyncio.run(postgres_databases("fuzz"))
    suite = RunningSuite(tmp_path_factory.mktemp("fuzz") / "var", urls)
    suite.start()
    yield suite
    suite.stop()
    for drop in drops:
        asyncio.run(drop())


def schemathesis_command(suite: RunningSuite, report_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
        "run", f"{suite.gateway_url}/openapi.json",
        "--header", f"Authorization: Bearer {suite.admin_key}",
        # No --checks: every check runs (each is on unless the config turns it off), and
        # --checks would override the per-operation exceptions of schemathesis.toml.
        "--phases", PHASES,
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--generation-deterministic",
        "--workers", "2",
        "--request-timeout", "30",
        "--no-color",
        "--report", "junit", "--report-dir", str(report_dir),
    ]


def test_the_api_does_what_its_openapi_document_says(scratch_suite, tmp_path):
    suite = scratch_suite
    # One real customer: positive cases refer to it (see schemathesis_hooks.py).
    created = httpx.post(
        f"{suite.gateway_url}/v1/customers",
        json={"email": "fuzz@example.com", "name": "Fuzz"},
        headers={"Authorization": f"Bearer {suite.admin_key}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "VALUECHAIN_FUZZ_CUSTOMER_ID": created.json()["id"],
    }
    run = subprocess.run(
        schemathesis_command(suite, tmp_path / "report"),
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    if run.returncode != 0:
        start = output.find("=== FAILURES ===")
        pytest.fail(
            f"schemathesis found {'failures' if start >= 0 else 'a problem'} (exit {run.returncode}):\n"
            + (output[max(start - 40, 0):] if start >= 0 else output)[-20000:],
            pytrace=False,
        )
    assert "No issues found" in output or " passed" in output, output[-3000:]
