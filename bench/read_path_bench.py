"""The services' own read path: `GET /v1/customers/{id}` served by identify from its
SQLite database, against a bare FastAPI endpoint returning a constant customer, both
one uvicorn process (uvloop + httptools), in the same run.

Target (issue 2): identify at least 0.5x the bare endpoint (the issue measured the
async ORM at 0.17x). Run: `.venv/bin/python -m bench.read_path_bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.gateway_bench import ROOT, free_port, run_python_load, run_wrk, wait_http
from shared.internal_auth import load_or_create_internal_secret
from shared.settings import SuiteSettings
from tests.support import NatsServer
from valuechain.nats_setup import provision_all

RUNS = int(os.environ.get("BENCH_REPEATS", "5"))
SECONDS = 5
CONNECTIONS = 10


def uvicorn(target: str, port: int, env: dict, factory: bool = False) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.insert(3, "--factory")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    nats_server = NatsServer(tmp / "js")
    nats_server.start()
    env = dict(os.environ, VALUECHAIN_VAR_DIR=str(tmp), VALUECHAIN_NATS_URL=nats_server.address)
    asyncio.run(provision_all(nats_server.address, nats_server.credentials("admin")))  # as `valuechain migrate`
    secret = load_or_create_internal_secret(SuiteSettings(var_dir=tmp))
    header = f"x-valuechain-internal: {secret}"  # identify answers only what carries the gateway's secret
    subprocess.run(
        [sys.executable, "-c", "from shared.db.migrations import upgrade; upgrade('identify')"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    bare_port, identify_port = free_port(), free_port()
    processes = [
        uvicorn("bench.gateway_bench:upstream_app", bare_port, env),
        uvicorn("services.identify.main:create_app", identify_port, env, factory=True),
    ]
    try:
        wait_http(f"http://127.0.0.1:{bare_port}/readyz")
        wait_http(f"http://127.0.0.1:{identify_port}/readyz")
        request = urllib.request.Request(
            f"http://127.0.0.1:{identify_port}/v1/customers",
            data=json.dumps({"email": "bench@example.com", "name": "Bench"}).encode(),
            headers={"content-type": "application/json", "x-valuechain-internal": secret},
        )
        customer_id = json.load(urllib.request.urlopen(request))["id"]
        load = run_wrk if shutil.which("wrk") else run_python_load
        targets = {
            "bare FastAPI endpoint": f"http://127.0.0.1:{bare_port}/v1/customers/{customer_id}",
            "identify GET /v1/customers/{id}": f"http://127.0.0.1:{identify_port}/v1/customers/{customer_id}",
        }
        for url in targets.values():
            load(url, "-", CONNECTIONS, 2, header)  # warm up
        results: dict[str, list] = {name: [] for name in targets}
        for _ in range(RUNS):
            for name, url in targets.items():  # alternate, so drift hits both alike
                results[name].append(load(url, "-", CONNECTIONS, SECONDS, header))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        nats_server.stop()
    medians = {name: statistics.median(run.rps for run in runs) for name, runs in results.items()}
    print(f"\nRead path, {load.__name__}: {CONNECTIONS} connections, {SECONDS} s x {RUNS} runs, medians\n")
    print("| target | requests/s | p50 ms | p99 ms | requests/s per run |")
    print("|---|---:|---:|---:|---|")
    for name, runs in results.items():
        print(
            f"| {name} | {medians[name]:,.0f} | {statistics.median(r.p50_ms for r in runs):.2f} | "
            f"{statistics.median(r.p99_ms for r in runs):.2f} | {', '.join(f'{r.rps:,.0f}' for r in runs)} |"
        )
    ratio = medians["identify GET /v1/customers/{id}"] / medians["bare FastAPI endpoint"]
    print(f"\nidentify / bare: {ratio:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
