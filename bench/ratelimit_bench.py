"""Rate limits across gateway processes: what one request's limit check costs when each
process keeps its own share of the bucket (gateway/ratelimit.py) against a bucket shared
in JetStream key-value (a get, then an update that expects the read revision, retried on
a conflict: the compare-and-set a shared bucket needs).

Measured per check: wall time, this process's CPU time (the gateway's, were it the
gateway), and the nats-server's CPU time. The KV runs against a real nats-server
(tests/support.NatsServer) with the bucket in memory, the cheapest storage:
sequentially, and with 50 checks at once (the gateway's concurrency in
bench/gateway_bench.py) on one key (one busy client: every check contends) and on 50
keys. Run: `.venv/bin/python -m bench.ratelimit_bench [--repeat 3] [--checks 3000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import struct
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError

from gateway.ratelimit import RateLimiter
from gateway.settings import DEFAULT_RATE_LIMITS
from tests.support import NatsServer

QUOTA = 10**9  # never refused: the check's cost, not the refusal's
WINDOW = 60.0
_STATE = struct.Struct("!dd")  # tokens, when counted


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local(checks: int, keys: int) -> dict[str, float]:
    limiter = RateLimiter({**DEFAULT_RATE_LIMITS, "admin": QUOTA}, window_s=60, replicas=2)
    names = [f"key-{i}" for i in range(keys)]
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(checks):
        limiter.take(names[i % keys], "admin")
    return {
        "wall_us": (time.perf_counter() - wall) / checks * 1e6,
        "cpu_us": (time.process_time() - cpu) / checks * 1e6,
        "server_cpu_us": 0.0,
        "conflicts": 0,
    }


async def _kv_take(kv, key: str, counter: list[int]) -> bool:
    """One check against the shared bucket: read it, refill, take a token, write it back
    if nobody wrote meanwhile (else read again)."""

    while True:
        now = time.time()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            tokens, revision = float(QUOTA), None
        else:
            tokens, stamp = _STATE.unpack(entry.value)
            tokens = min(float(QUOTA), tokens + (now - stamp) * QUOTA / WINDOW)
            revision = entry.revision
        allowed = tokens >= 1
        value = _STATE.pack(tokens - 1 if allowed else tokens, now)
        try:
            if revision is None:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=revision)
            return allowed
        except (KeyWrongLastSequenceError, nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            counter[0] += 1


async def shared(url: str, server_pid: int, checks: int, concurrency: int, keys: int) -> dict[str, float]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        bucket = f"ratelimit{int(time.time() * 1e6)}"
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.MEMORY))
        conflicts = [0]
        names = [f"key-{i}" for i in range(keys)]
        for name in names:  # buckets exist: the steady state, a get and an update per check
            await _kv_take(kv, name, conflicts)
        conflicts[0] = 0
        per_task = checks // concurrency

        async def worker(index: int) -> None:
            for i in range(per_task):
                await _kv_take(kv, names[(index + i) % keys], conflicts)

        server_cpu = _cpu_of(server_pid)
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        done = per_task * concurrency
        result = {
            "wall_us": (time.perf_counter() - wall) / done * 1e6,
            "cpu_us": (time.process_time() - cpu) / done * 1e6,
            "server_cpu_us": (_cpu_of(server_pid) - server_cpu) / done * 1e6,
            "conflicts": conflicts[0] / done,
        }
        await js.delete_key_value(bucket)
        return result
    finally:
        await nc.close()


def _cell(values: list[float], digits: int = 1) -> str:
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


async def run(repeat: int, checks: int) -> None:
    cases: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(Path(store))
        server.start()
        try:
            assert server.process is not None
            for _ in range(repeat):
                cases.setdefault("local bucket, 1 key", []).append(local(checks * 100, 1))
                cases.setdefault("local bucket, 10,000 keys", []).append(local(checks * 100, 10_000))
                for label, concurrency, keys in (
                    ("JetStream KV get+update, sequential", 1, 1),
                    ("JetStream KV get+update, 50 at once, 1 key", 50, 1),
                    ("JetStream KV get+update, 50 at once, 50 keys", 50, 50),
                ):
                    result = await shared(server.url, server.process.pid, checks, concurrency, keys)
                    cases.setdefault(label, []).append(result)
        finally:
            server.stop()
    print(f"\nmachine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"{repeat} runs; medians (min–max); µs per limit check\n")
    print("| check | wall µs | gateway CPU µs | nats-server CPU µs | CAS retries per check |")
    print("|---|---|---|---|---|")
    for label, results in cases.items():
        print(
            f"| {label} | {_cell([r['wall_us'] for r in results], 2)} | {_cell([r['cpu_us'] for r in results], 2)} "
            f"| {_cell([r['server_cpu_us'] for r in results])} | {_cell([r['conflicts'] for r in results], 2)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checks", type=int, default=3000, help="KV checks per case (local: 100x as many)")
    args = parser.parse_args()
    asyncio.run(run(args.repeat, args.checks))


if __name__ == "__main__":
    main()
