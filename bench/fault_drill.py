"""Issue 17 §3's fault drill: faults during a burst of purchases, on loopback, and nothing lost.

Setup: `valuechain run --replicas 2 --nats-cluster 3` (three NATS nodes, stream R3 with
`sync_interval: always`, two processes of every service and two gateways) on PostgreSQL, one
fresh database per service. Then:

1. `--customers` customers (2,000) are created, each to make one purchase: its first, which
   moves it to `new`, earns a welcome offer and lands on its timeline;
2. the purchases are sent through both gateways at `--rate` per second, and every 201 is kept;
3. while they are sent: SIGKILL the NATS node that leads the stream; then SIGKILL one replica
   of lifecycle and one of value; then SIGSTOP one NATS node for `--pause-s` (30) seconds, a
   pause like a long GC stall, and SIGCONT it. `valuechain run` restarts the killed processes
   by itself, as it would any that died;
4. the gateway's `/readyz` is polled throughout, and what it reported while the faults lasted
   and at the end is printed;
5. once the suite is quiet, every purchase that got its 201 is checked through the API:
   recorded once (the customer's transactions), moved to `new` exactly once (the lifecycle
   history), given exactly one welcome offer, and on the timeline once.

Run: `VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://user@host/postgres .venv/bin/python -m
bench.fault_drill [--customers 2000] [--rate 50] [--pause-s 30]`; it prints a report and exits
non-zero when a check fails. docs/operations.md ("Faults, on loopback") has a run's result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import nats

from shared.settings import nats_servers
from tests.e2e.harness import RunningSuite, postgres_databases


def processes(needle: str) -> dict[int, str]:
    """pid → command line of the processes whose command line holds `needle`."""

    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmdline:
                found[int(entry.name)] = cmdline
    return found


def nats_pid(suite: RunningSuite, node: str) -> int:
    """The pid of the embedded cluster's node `node` (nats-1, ...), by its configuration file."""

    conf = str(suite.var_dir / "nats" / f"{node}.conf")
    (pid,) = [pid for pid, cmd in processes(conf).items() if "nats-server" in cmd]
    return pid


def replica_pid(suite: RunningSuite, service: str, replica: int) -> int:
    port = suite.service_urls(service)[replica].rsplit(":", 1)[1]
    (pid,) = [pid for pid, cmd in processes(f"services.{service}.main").items() if f"--port {port}" in cmd]
    return pid


async def stream_leader(suite: RunningSuite) -> str:
    nc = await nats.connect(servers=nats_servers(suite.nats_url), connect_timeout=2, max_reconnect_attempts=3)
    try:
        info = await nc.jetstream(timeout=5).stream_info("CRM")
        assert info.cluster is not None and info.cluster.leader
        return info.cluster.leader
    finally:
        await nc.close()


class Readiness:
    """The first gateway's /readyz, polled: each distinct report with when it was first seen."""

    def __init__(self, suite: RunningSuite, started: float):
        self.url = f"{suite.gateway_url}/readyz"
        self.started = started
        self.seen: list[tuple[float, int, str]] = []

    async def watch(self) -> None:
        async with httpx.AsyncClient(timeout=3) as client:
            while True:
                try:
                    answer = await client.get(self.url)
                    body = answer.json()
                    bad = {k: str(v)[:60] for k, v in sorted(body.get("checks", {}).items()) if v != "ready"}
                    degraded = {
                        name: f"{r.get('healthy')}/{r.get('total')}"
                        for name, r in sorted(body.get("replicas", {}).items())
                        if r.get("healthy") != r.get("total")
                    }
                    parts = ([f"not ready: {bad}"] if bad else []) + (
                        [f"replicas healthy: {degraded}"] if degraded else []
                    )
                    summary = "; ".join(parts) or "all ready"
                    status = answer.status_code
                except (httpx.HTTPError, ValueError) as exc:
                    status, summary = 0, f"no answer ({exc.__class__.__name__})"
                if not self.seen or self.seen[-1][1:] != (status, summary):
                    self.seen.append((time.monotonic() - self.started, status, summary))
                await asyncio.sleep(0.5)


async def faults(suite: RunningSuite, pause_s: float, log: list[str], started: float) -> None:
    def note(what: str) -> None:
        log.append(f"{time.monotonic() - started:6.1f} s  {what}")
        print(log[-1], flush=True)

    await asyncio.sleep(3)
    leader = await stream_leader(suite)
    os.kill(nats_pid(suite, leader), signal.SIGKILL)
    note(f"SIGKILL {leader}, the stream's leader")
    await asyncio.sleep(5)
    for service in ("lifecycle", "value"):
        pid = replica_pid(suite, service, 0)
        os.kill(pid, signal.SIGKILL)
        note(f"SIGKILL {service} replica 1 (pid {pid})")
    await asyncio.sleep(5)
    paused = next(f"nats-{i}" for i in (1, 2, 3) if f"nats-{i}" != leader)
    pid = nats_pid(suite, paused)
    os.kill(pid, signal.SIGSTOP)
    note(f"SIGSTOP {paused} for {pause_s:.0f} s")
    await asyncio.sleep(pause_s)
    os.kill(pid, signal.SIGCONT)
    note(f"SIGCONT {paused}")


async def drill(suite: RunningSuite, customers: int, rate: float, pause_s: float) -> int:
    headers = {"Authorization": f"Bearer {suite.admin_key}"}
    limits = httpx.Limits(max_connections=32)
    gateways = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) for url in suite.gateway_urls
    ]
    try:
        gw = gateways[0]
        semaphore = asyncio.Semaphore(16)

        async def create(i: int) -> str:
            async with semaphore:
                made = await gw.post("/v1/customers", json={"external_id": f"drill-{i}"})
                made.raise_for_status()
                return str(made.json()["id"])

        ids = await asyncio.gather(*(create(i) for i in range(customers)))
        print(f"{len(ids)} customers created", flush=True)
        await asyncio.sleep(5)  # their prospect stages settle

        started = time.monotonic()
        readiness = Readiness(suite, started)
        watcher = asyncio.create_task(readiness.watch())
        log: list[str] = []
        fault_task = asyncio.create_task(faults(suite, pause_s, log, started))
        answered: dict[str, int] = {}
        failures: Counter[str] = Counter()

        async def purchase(n: int, customer_id: str) -> None:
            body = {
                "customer_id": customer_id,
                "amount": "9.99",
                "currency": "USD",
                "occurred_at": "2026-11-01T10:00:00Z",
                "external_id": f"drill-order-{n}",
            }
            try:
                response = await gateways[n % len(gateways)].post("/v1/transactions", json=body)
            except httpx.HTTPError as exc:
                failures[exc.__class__.__name__] += 1
                return
            if response.status_code == 201:
                answered[customer_id] = n
            else:
                failures[str(response.status_code)] += 1

        tasks = []
        for n, customer_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(purchase(n, customer_id)))
        await asyncio.gather(*tasks)
        await fault_task
        print(
            f"burst over at {time.monotonic() - started:.1f} s: {len(answered)} answered 201, others {dict(failures)}"
        )

        # Quiet: every 201's effects in place (or the deadline), and readiness back.
        async def effects_of(customer_id: str) -> dict[str, int]:
            transactions = (await gw.get(f"/v1/customers/{customer_id}/transactions")).json()["items"]
            stage = (await gw.get(f"/v1/customers/{customer_id}/lifecycle")).json()
            offers = (await gw.get(f"/v1/customers/{customer_id}/offers")).json()["items"]
            timeline = (await gw.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 100})).json()["items"]
            return {
                "recorded": len(transactions),
                "to new": sum(1 for step in stage["history"] if step["to"] == "new"),
                "welcome offers": sum(1 for offer in offers if offer["kind"] == "welcome"),
                "on the timeline": sum(1 for item in timeline if item["type"] == "crm.identify.transaction.recorded"),
            }

        deadline = time.monotonic() + 600
        while True:
            results = {}
            for customer_id in answered:
                async with semaphore:
                    results[customer_id] = await effects_of(customer_id)
            wrong = {cid: r for cid, r in results.items() if any(v != 1 for v in r.values())}
            if not wrong or time.monotonic() > deadline:
                break
            print(f"{len(wrong)} purchases not yet settled; looking again", flush=True)
            await asyncio.sleep(10)
        await asyncio.sleep(5)
        watcher.cancel()

        print("\nFaults:")
        print("\n".join(log))
        print("\nThe gateway's /readyz (seconds from the burst's start, status, what it said):")
        for at, status, summary in readiness.seen:
            print(f"  {at:6.1f} s  {status}  {summary}")
        tally = {key: Counter(r[key] for r in results.values()) for key in next(iter(results.values()), {})}
        print(f"\nEvery purchase answered 201 ({len(answered)} of {customers}); how many times each effect happened:")
        for key, counts in tally.items():
            print(f"  {key:16s} {dict(sorted(counts.items()))}")
        ok = not wrong and readiness.seen and readiness.seen[-1][1:] == (200, "all ready")
        print("\nresult:", "nothing lost, nothing twice, readiness recovered" if ok else f"FAILED: {len(wrong)} wrong")
        return 0 if ok else 1
    finally:
        for client in gateways:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="purchases per second in the burst")
    parser.add_argument("--pause-s", type=float, default=30.0, help="how long one NATS node is stopped")
    args = parser.parse_args()
    database_urls, drops = asyncio.run(postgres_databases("drill"))
    if not database_urls:
        sys.exit("set VALUECHAIN_TEST_POSTGRES_URL: the drill runs on PostgreSQL")
    suite = RunningSuite(Path(tempfile.mkdtemp()) / "var", database_urls, replicas=2, nats_cluster=3)
    suite.start()
    try:
        code = asyncio.run(drill(suite, args.customers, args.rate, args.pause_s))
    finally:
        suite.stop()
        for drop in drops:
            asyncio.run(drop())
    sys.exit(code)


if __name__ == "__main__":
    main()
