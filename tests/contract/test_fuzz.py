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

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import RunningSuite, scratch_suite

HERE = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("VALUECHAIN_FUZZ_EXAMPLES", "10"))
# Stateful too: it chains operations through the links schemathesis infers (create a
# customer, then read, patch, merge it...), in the scratch suite only.
PHASES = os.environ.get("VALUECHAIN_FUZZ_PHASES", "examples,coverage,fuzzing,stateful")
# Deterministic mode derandomizes generation (schemathesis then reports the seed as
# unused); the seed pins the rest, and any run with deterministic mode switched off.
SEED = 20261204


@pytest.fixture(scope="module")
def fuzzed_suite(tmp_path_factory):
    with scratch_suite(tmp_path_factory.mktemp("fuzz") / "var", "fuzz") as suite:
        yield suite


def schemathesis_command(suite: RunningSuite) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{suite.gateway_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {suite.admin_key}",
        # No --checks: every check runs (each is on unless the config turns it off), and
        # --checks would override the per-operation exceptions of schemathesis.toml.
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        # One worker: with two threads, Hypothesis' ast.parse (describing a filter) can fail
        # with "SystemError: AST constructor recursion depth mismatch" on Python 3.11.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]


def test_the_api_does_what_its_openapi_document_says(fuzzed_suite):
    suite = fuzzed_suite
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
        # A failure is shrunk to its smallest case before it is reported, which takes
        # longer than a clean run (~30 s on 2 cores): the timeout leaves room for it.
        schemathesis_command(suite),
        cwd=HERE.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    if run.returncode != 0:
        # From schemathesis' first section after its progress lines: ERRORS or FAILURES.
        starts = [i for i in (output.find("=== ERRORS ==="), output.find("=== FAILURES ===")) if i >= 0]
        report = output[max(min(starts) - 40, 0) :] if starts else output
        pytest.fail(f"schemathesis found problems (exit {run.returncode}):\n{report[-30000:]}", pytrace=False)
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    assert selected and selected[1] == selected[2] and int(selected[1]) > 0, output[-3000:]
