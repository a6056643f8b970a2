"""Two write routes of the running suite against each other, through the gateway, closed loop:
what messages_bench and ticket_bench share (each brings its routes' bodies and its set-up)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench.latency_bench import PurchaseClient
from tests.e2e.harness import RunningSuite, postgres_databases

# (the suite, the benchmark's arguments) → whatever `bodies` needs (e.g. the customers).
Prepare = Callable[[RunningSuite, argparse.Namespace], Awaitable[list[str]]]
Bodies = Callable[[str, list[str]], Iterator[bytes]]


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per route")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--customers", type=int, default=50)
    return parser.parse_args()


async def _round(client: PurchaseClient, route: str, bodies: Iterator[bytes], seconds: float, connections: int):
    done = failed = 0
    stop = time.monotonic() + seconds

    async def worker():
        nonlocal done, failed
        while time.monotonic() < stop:
            if await client.post(route, next(bodies)) == 201:
                done += 1
            else:
                failed += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.monotonic() - started), failed


async def _run(suite: RunningSuite, args, routes: tuple[str, str], prepare: Prepare, bodies: Bodies):
    client = PurchaseClient(suite.gateway_url, suite.admin_key)
    await client.open(args.connections)
    try:
        customers = await prepare(suite, args)
        for route in routes:  # warm up both
            await _round(client, route, bodies(route, customers), 2, args.connections)
        results: dict[str, list[float]] = {route: [] for route in routes}
        for n in range(args.repeat):
            for route in routes if n % 2 == 0 else tuple(reversed(routes)):
                rate, failed = await _round(client, route, bodies(route, customers), args.seconds, args.connections)
                assert failed == 0, f"{failed} requests to {route} failed"
                results[route].append(rate)
        return results
    finally:
        client.close()


def compare(args, *, tag: str, routes: tuple[str, str], prepare: Prepare, bodies: Bodies, name: str) -> None:
    """Run `routes[0]` against `routes[1]` and print the table and the ratio against the 0.5× target."""

    database_urls, drops = asyncio.run(postgres_databases(tag))
    print("databases:", "PostgreSQL" if database_urls else "SQLite")
    suite = RunningSuite(Path(tempfile.mkdtemp()) / "var", database_urls or None)
    suite.start()
    try:
        import uvloop

        results = uvloop.run(_run(suite, args, routes, prepare, bodies))
    finally:
        suite.stop()
        for drop in drops:
            asyncio.run(drop())
    print(f"\nClosed loop, {args.connections} connections, {args.seconds:.0f} s rounds, {args.repeat} rounds each\n")
    print("| route | median req/s | rounds |")
    print("|---|---:|---|")
    medians = {}
    for route, rates in results.items():
        medians[route] = statistics.median(rates)
        print(f"| POST {route} | {medians[route]:.0f} | {', '.join(f'{r:.0f}' for r in rates)} |")
    ratio = medians[routes[0]] / medians[routes[1]]
    print(f"\n{name}: {ratio:.2f}x (target ≥ 0.5x): {'met' if ratio >= 0.5 else 'NOT met'}")
