"""End-to-end event latency through the running suite: a purchase answered 201 by
the gateway → the customer's stage change committed by lifecycle and announced.

`crm.lifecycle.stage.changed` is relayed from lifecycle's outbox only after the
stage change committed, so the time from the gateway's 201 to that event
arriving is an upper bound on "the effect is visible in another service".
Writes arrive open-loop at a fixed rate (default 200/s), each purchase the first
of its customer. Baseline in the same run: JetStream alone, publish → consume
of one message at the same rate. Target (issue 2): p99 under 50 ms at 200 writes/s.

Run: `.venv/bin/python -m bench.latency_bench [--rate 200] [--seconds 15] [--nats-cluster 3] [--warm-up 5]`
(3: `valuechain run --nats-cluster 3`, the stream R3 with `sync_interval: always`; the
warm-up: `warm_up` below, 0 for none, as the bench was before stop 20); with
`VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…/postgres` each service gets a
fresh database on that server instead of SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import nats
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import nats_servers
from tests.e2e.harness import RunningSuite, postgres_databases
from tests.support import POSTGRES_URL


def _is_postgres(program: bytes) -> bool:
    return program.endswith(b"/postgres") or program.startswith(b"postgres:")


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (every core, /proc/stat): counts processes that
    exit during a run too (PostgreSQL's backends of connections a pool closes)."""

    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu(root_pid: int, pids: dict[str, list[int]] | None = None) -> dict[str, float]:
    """CPU seconds (user + system) of every process under root_pid, by its name (and, into
    `pids` when given, each name's process ids)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmdline)
    under = {root_pid}
    for _ in range(4):  # the supervisor's children and theirs
        under |= {pid for pid, (ppid, _, _) in stats.items() if ppid in under}
    # PostgreSQL's server processes are not the suite's children, but their work is the suite's
    # when it runs on PostgreSQL (on SQLite, a server on the machine is none of the suite's).
    if POSTGRES_URL:
        under |= {pid for pid, (_, _, cmdline) in stats.items() if _is_postgres(cmdline[0])}
    cpu: dict[str, float] = {}
    for pid in under & stats.keys():
        _, seconds, cmdline = stats[pid]
        args = [a.decode() for a in cmdline if a]
        name = next((a.split(".")[1] for a in args if a.startswith("services.")), None)
        if name is None:
            name = (
                "gateway"
                if "gateway" in args
                else "postgresql"
                if _is_postgres(cmdline[0])
                else "nats-server"
                if any("nats-server" in a for a in args)
                else "supervisor"
            )
        cpu[name] = cpu.get(name, 0.0) + seconds
        if pids is not None:
            pids.setdefault(name, []).append(pid)
    return cpu


def context_switches(pids: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each name's processes, all their threads.
    A voluntary one is a wake-up after waiting (a socket, a timer, a lock); at a low rate each
    serves fewer events, and CPU per purchase follows them (docs/benchmarks.md, "Stop 28")."""

    switches: dict[str, tuple[int, int]] = {}
    for name, found in pids.items():
        voluntary = involuntary = 0
        for pid in found:
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    status = (task / "status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        switches[name] = (voluntary, involuntary)
    return switches


def start_profilers(root_pid: int, out_dir: Path, seconds: float) -> list[subprocess.Popen]:
    """py-spy (when installed: it is a profiling tool, not a dependency) sampling every Python
    process of the suite for `seconds`, each into `<out_dir>/<name>.txt` as collapsed stacks."""
    names: dict[str, list[int]] = {}
    process_cpu(root_pid, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit(f"BENCH_PROFILE_DIR needs py-spy: {spy.parent / 'pip'} install py-spy")
    # Sampling costs the machine CPU too, which makes the suite's micro-batches larger than
    # unobserved: profile only some processes (BENCH_PROFILE_ONLY=lifecycle,engage), slowly.
    only = set(filter(None, os.environ.get("BENCH_PROFILE_ONLY", "").split(",")))
    rate = os.environ.get("BENCH_PROFILE_RATE", "250")
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--rate",
                rate,
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, found in names.items()
        if name not in ("nats-server", "postgresql") and (not only or name in only)
        for pid in found[:1]
    ]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1], "n": len(values)}


async def transport_baseline(nats_url: str, rate: float, count: int) -> list[float]:
    nc = await nats.connect(nats_servers(nats_url))
    js = nc.jetstream()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(msg):
        latencies.append((time.perf_counter() - sent[msg.data.decode()]) * 1000)
        if len(latencies) >= count:
            done.set()

    sub = await nc.subscribe("crm.bench.baseline", cb=on_message)
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        key = str(i)
        sent[key] = time.perf_counter()
        await js.publish("crm.bench.baseline", key.encode(), headers={"Nats-Msg-Id": f"baseline-{started}-{i}"})
    await asyncio.wait_for(done.wait(), timeout=30)
    await sub.unsubscribe()
    await nc.close()
    return latencies


class PurchaseClient:
    """A pool of keep-alive HTTP/1.1 connections that POSTs JSON and reads the status."""

    def __init__(self, base_url: str, key: str):
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port
        self.head = (
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.free: asyncio.Queue = asyncio.Queue()
        self.connections: list = []

    async def open(self, n: int) -> None:
        for _ in range(n):
            connection = await asyncio.open_connection(self.host, self.port)
            self.connections.append(connection)
            self.free.put_nowait(connection)

    async def post(self, path: str, body: bytes) -> int:
        reader, writer = connection = await self.free.get()
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (path.encode(), self.head, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            return status
        finally:
            self.free.put_nowait(connection)

    def close(self) -> None:
        for _, writer in self.connections:
            writer.close()


async def suite_latency(suite: RunningSuite, rate: float, count: int) -> tuple[list[float], int]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=suite.gateway_url, limits=limits, timeout=30, headers={"Authorization": f"Bearer {suite.admin_key}"}
    ) as gw:
        semaphore = asyncio.Semaphore(32)
        run = uuid.uuid4().hex[:8]  # a suite may take several runs (bench/ceiling_bench.py)

        async def create(i: int) -> str:
            async with semaphore:
                response = await gw.post("/v1/customers", json={"external_id": f"bench-{run}-{i}"})
                response.raise_for_status()
                return response.json()["id"]

        customers = await asyncio.gather(*(create(i) for i in range(count)))
        await asyncio.sleep(2)  # let the prospect stage changes drain

        arrived: dict[str, float] = {}
        # The hops between: the purchase's event on NATS, and the stage change's own time
        # (stamped in lifecycle's transaction), on this clock.
        recorded: dict[str, float] = {}
        emitted: dict[str, float] = {}
        wall_minus_perf = time.time() - time.perf_counter()
        nc = await nats.connect(nats_servers(suite.nats_url))

        async def on_stage(msg):
            event = json.loads(msg.data)
            if event["data"]["to_stage"] == "new":
                arrived[event["subject"]] = time.perf_counter()
                stamped = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
                emitted[event["subject"]] = stamped - wall_minus_perf

        async def on_recorded(msg):
            recorded.setdefault(json.loads(msg.data)["subject"], time.perf_counter())

        await nc.subscribe("crm.lifecycle.stage.changed", cb=on_stage)
        await nc.subscribe("crm.identify.transaction.recorded", cb=on_recorded)
        answered: dict[str, float] = {}
        failures = 0
        # The purchases go over a bare keep-alive HTTP/1.1 client: httpx costs this
        # process so much CPU per request that at 200/s the 201s were read late
        # (some after the event they caused had arrived) and the writes fell
        # behind their schedule.
        gateway = PurchaseClient(suite.gateway_url, suite.admin_key)
        await gateway.open(32)

        sent_at: dict[str, float] = {}

        async def purchase(customer_id: str) -> None:
            nonlocal failures
            body = json.dumps(
                {"customer_id": customer_id, "amount": "9.99", "currency": "USD", "occurred_at": "2026-11-01T10:00:00Z"}
            ).encode()
            sent_at[customer_id] = time.perf_counter()
            if await gateway.post("/v1/transactions", body) == 201:
                answered[customer_id] = time.perf_counter()
            else:
                failures += 1

        assert suite.process is not None, "started"
        suite_pids: dict[str, list[int]] = {}
        cpu_before = process_cpu(suite.process.pid, suite_pids)
        switches_before = context_switches(suite_pids)
        machine_before = machine_cpu()
        profile_dir = os.environ.get("BENCH_PROFILE_DIR")  # py-spy every service while writing
        profilers = start_profilers(suite.process.pid, Path(profile_dir), count / rate) if profile_dir else []
        print("writing purchases", flush=True)
        bench_cpu = time.process_time()
        started = time.perf_counter()
        tasks = []
        for i, customer_id in enumerate(customers):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(purchase(customer_id)))
        await asyncio.gather(*tasks)
        written_in = time.perf_counter() - started
        gateway.close()
        deadline = time.perf_counter() + 30
        while len(arrived) < len(answered) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        await nc.close()
        for profiler in profilers:
            profiler.wait()
        cpu_after = process_cpu(suite.process.pid)
        switches_after = context_switches(suite_pids)
        machine_busy = machine_cpu() - machine_before
        cpu_after["load generator"] = time.process_time() - bench_cpu
        cpu_before["load generator"] = 0.0
        print("\nCPU per write, ms (write phase and drain):")
        for name in sorted(cpu_after, key=lambda n: cpu_before.get(n, 0.0) - cpu_after[n]):
            print(f"  {name:15s} {(cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / max(1, len(answered)):6.2f}")
        suite_total = sum(cpu_after[n] - cpu_before.get(n, 0.0) for n in cpu_after if n != "load generator")
        per_write = 1000 / max(1, len(answered))
        print(f"  {'suite total':15s} {suite_total * per_write:6.2f}  (the processes above but the load generator)")
        print(
            f"  {'machine busy':15s} {machine_busy * per_write:6.2f}  (all cores, /proc/stat: the load generator too)"
        )
        print("\nContext switches per write, voluntary / involuntary (all threads; the processes above):")
        writes = max(1, len(answered))
        switched = {}  # over the write phase and the drain, sorted by that and not by the totals
        for name, (voluntary, involuntary) in switches_after.items():
            was = switches_before.get(name, (0, 0))
            switched[name] = (voluntary - was[0], involuntary - was[1])
        for name, (voluntary, involuntary) in sorted(switched.items(), key=lambda item: -sum(item[1])):
            print(f"  {name:15s} {voluntary / writes:6.2f} / {involuntary / writes:5.2f}")
    latencies = [(arrived[c] - answered[c]) * 1000 for c in answered if c in arrived]
    if os.environ.get("BENCH_LATENCY_BY_SECOND"):  # where in the run the slow ones were
        by_second: dict[int, list[float]] = {}
        for c in answered:
            if c in arrived:
                by_second.setdefault(int(answered[c] - started), []).append((arrived[c] - answered[c]) * 1000)
        for second, values in sorted(by_second.items()):
            p = percentiles(values)
            print(f"  second {second:2d}: n={p['n']:3d} p50={p['p50']:6.1f} p99={p['p99']:6.1f} max={p['max']:6.1f}")
    hops = {
        "sent → 201 (incl. waiting for a connection)": [answered[c] - sent_at[c] for c in answered],
        "201 → transaction.recorded on NATS": [recorded[c] - answered[c] for c in answered if c in recorded],
        "on NATS → lifecycle stamps the stage change": [
            emitted[c] - recorded[c] for c in answered if c in emitted and c in recorded
        ],
        "stamped → stage.changed on NATS": [arrived[c] - emitted[c] for c in answered if c in emitted],
    }
    print("\nHops (ms; the 201 can be read after its event was published, so a hop can be < 0):")
    for name, values in hops.items():
        p = percentiles([v * 1000 for v in values])
        print(f"  {name:45s} p50 {p['p50']:7.1f}  p90 {p['p90']:7.1f}  p99 {p['p99']:7.1f}")
    print(f"\n{len(answered) + failures} writes sent in {written_in:.1f} s")
    return latencies, failures + (len(answered) - len(latencies))


async def warm_up(suite: RunningSuite, rate: float, seconds: float) -> None:
    """Bring the suite to a steady state before measuring: purchases of customers of their
    own at `rate` for `seconds`, then, on PostgreSQL, ANALYZE in every database.

    What it stands in for: a running installation's tables hold rows, and autovacuum
    analyzes a table once a tenth of it changed, at most a minute later. Measured on
    fresh databases instead, the run met tables PostgreSQL had analyzed empty (or not at
    all), and prepared statements planned then keep their plans until the next ANALYZE:
    sequential scans of tables that grew to thousands of rows while they ran (the loyalty
    ledger, the purchase months, the offers; 1-1.6 ms a lookup by the run's end)."""

    with contextlib.redirect_stdout(io.StringIO()):
        await suite_latency(suite, rate, int(rate * seconds))
    for url in suite.database_urls.values():
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("ANALYZE")
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to write")
    parser.add_argument(
        "--nats-cluster", type=int, default=1, choices=[1, 3], help="3: a three-node JetStream cluster, stream R3"
    )
    parser.add_argument(
        "--warm-up", type=float, default=5.0, help="seconds of unmeasured purchases first (then ANALYZE on PostgreSQL)"
    )
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    # With VALUECHAIN_TEST_POSTGRES_URL set, each service gets a fresh PostgreSQL database.
    database_urls, drops = asyncio.run(postgres_databases("latency"))
    print("databases:", "PostgreSQL" if database_urls else "SQLite")
    print("NATS:", f"a cluster of {args.nats_cluster}, R{args.nats_cluster}" if args.nats_cluster > 1 else "one server")
    suite = RunningSuite(Path(tempfile.mkdtemp()) / "var", database_urls or None, nats_cluster=args.nats_cluster)
    suite.start()
    try:
        import uvloop

        baseline = uvloop.run(transport_baseline(suite.nats_url, args.rate, count))
        if args.warm_up:
            uvloop.run(warm_up(suite, args.rate, args.warm_up))
        latencies, lost = uvloop.run(suite_latency(suite, args.rate, count))
    finally:
        suite.stop()
        for drop in drops:
            asyncio.run(drop())
    rows = [
        ("baseline: JetStream publish → consume", percentiles(baseline), 0),
        ("gateway 201 → lifecycle stage.changed", percentiles(latencies), lost),
    ]
    print(f"\nEnd-to-end latency at {args.rate:.0f} writes/s for {args.seconds:.0f} s ({count} writes)\n")
    print("| path | p50 ms | p90 ms | p99 ms | max ms | measured | lost |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, p, missing in rows:
        print(f"| {name} | {p['p50']:.1f} | {p['p90']:.1f} | {p['p99']:.1f} | {p['max']:.1f} | {p['n']} | {missing} |")
    under = sum(1 for value in latencies if value < 50) / max(1, len(latencies))
    print(f"\n{under:.1%} under 50 ms; median {statistics.median(latencies):.1f} ms")


if __name__ == "__main__":
    main()
