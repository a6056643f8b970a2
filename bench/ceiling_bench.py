"""The ceiling: the highest sustained write rate at which a purchase's 201 → lifecycle's stage
change keeps a p99 under 100 ms (issue 17 §4), with 1 and with N replicas of every service.

One suite per replica count (`valuechain run --replicas N`); rates rise step by step on it, each
for `--seconds`, until the p99 passes the limit (or the writes fall behind their schedule, which
is the same: the load generator waits for answers). The purchases go through the first gateway,
which spreads them over every replica of identify; the consumers' work is shared by the replicas
through their leases. Each step prints the CPU every process spent per write, which shows where
the bottleneck is.

Run: `.venv/bin/python -m bench.ceiling_bench [--replicas 1 2] [--rates 100 150 200 250 300 400]
[--seconds 10] [--limit-ms 100] [--warm-up 5]` (latency_bench's warm-up, at the first rate);
with VALUECHAIN_TEST_POSTGRES_URL each service gets a fresh PostgreSQL database (two replicas
of a service need it or share its SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import uvloop

from bench.latency_bench import percentiles, suite_latency, warm_up
from tests.e2e.harness import RunningSuite, postgres_databases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 150, 200, 250, 300, 400])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--limit-ms", type=float, default=100.0)
    parser.add_argument(
        "--warm-up", type=float, default=5.0, help="seconds of unmeasured purchases first (then ANALYZE on PostgreSQL)"
    )
    args = parser.parse_args()
    rows = []
    for replicas in args.replicas:
        database_urls, drops = asyncio.run(postgres_databases(f"ceiling{replicas}"))
        suite = RunningSuite(Path(tempfile.mkdtemp()) / "var", database_urls or None, replicas=replicas)
        suite.start()
        try:
            if args.warm_up:
                uvloop.run(warm_up(suite, args.rates[0], args.warm_up))
            for rate in args.rates:
                latencies, lost = uvloop.run(suite_latency(suite, rate, int(rate * args.seconds)))
                p = percentiles(latencies)
                rows.append((replicas, rate, p, lost))
                print(
                    f"replicas {replicas}, {rate:.0f}/s: p50 {p['p50']:.1f} p99 {p['p99']:.1f} ms, lost {lost}",
                    flush=True,
                )
                if p["p99"] > args.limit_ms or lost:
                    break
        finally:
            suite.stop()
            for drop in drops:
                asyncio.run(drop())
    print(f"\n| replicas | writes/s | p50 ms | p99 ms | max ms | under {args.limit_ms:.0f} ms |")
    print("|---:|---:|---:|---:|---:|---|")
    for replicas, rate, p, lost in rows:
        ok = p["p99"] < args.limit_ms and not lost
        print(
            f"| {replicas} | {rate:.0f} | {p['p50']:.1f} | {p['p99']:.1f} | {p['max']:.1f} | {'yes' if ok else 'no'} |"
        )


if __name__ == "__main__":
    main()
