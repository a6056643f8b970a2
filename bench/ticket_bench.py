"""POST /v1/tickets (a ticket with its SLA due times in business time, its history row and its
event) against POST /v1/interactions (one row and its event), through the gateway of the running
suite, closed loop: the issue's target is tickets ≥ 0.5× interactions.

The default SLA policy has a business calendar (Europe/Berlin, Monday–Friday 09:00–17:00, Berlin's
public holidays from the holidays package), so each ticket's due times walk working days. Each
round runs `--connections` keep-alive connections writing as fast as they are answered for
`--seconds`, one route then the other (the order alternating between rounds), `--repeat` rounds;
it prints each route's requests/s per round, the medians and their ratio.

Run: `.venv/bin/python -m bench.ticket_bench [--seconds 10] [--repeat 5] [--connections 16]`;
with `VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…/postgres` on fresh PostgreSQL databases.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.latency_bench import PurchaseClient
from bench.messages_bench import _customers
from tests.e2e.harness import RunningSuite, postgres_databases

ROUTES = ("/v1/tickets", "/v1/interactions")
PRIORITIES = ("low", "normal", "high", "urgent")


async def _sla_policy(suite: RunningSuite, customers: list[str]) -> None:
    """A default policy on a Berlin calendar; waits until lifecycle knows the last customer."""

    async with httpx.AsyncClient(
        base_url=suite.gateway_url, headers={"Authorization": f"Bearer {suite.admin_key}"}, timeout=30
    ) as http:
        calendar = await http.post(
            "/v1/business-calendars",
            json={"name": "Berlin", "time_zone": "Europe/Berlin", "holiday_country": "DE", "holiday_subdivision": "BE"},
        )
        assert calendar.status_code == 201, calendar.text
        targets = [
            {"priority": p, "first_response_minutes": 60 * (n + 1), "resolution_minutes": 480 * (n + 1)}
            for n, p in enumerate(reversed(PRIORITIES))
        ]
        policy = await http.post(
            "/v1/sla-policies",
            json={"name": "Standard", "calendar_id": calendar.json()["id"], "targets": targets, "is_default": True},
        )
        assert policy.status_code == 201, policy.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await http.get(f"/v1/customers/{customers[-1]}/lifecycle")).status_code == 200:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("lifecycle did not learn the customers")


def _bodies(route: str, customers: list[str]):
    for i in itertools.count():
        customer = customers[i % len(customers)]
        if route == "/v1/tickets":
            body = {
                "customer_id": customer,
                "subject": f"Ticket {i}",
                "channel": "phone",
                "priority": PRIORITIES[i % len(PRIORITIES)],
            }
        else:
            body = {"customer_id": customer, "channel": "phone", "direction": "inbound", "summary": f"Ticket {i}"}
        yield json.dumps(body).encode()


async def _round(client: PurchaseClient, route: str, customers: list[str], seconds: float, connections: int):
    bodies = _bodies(route, customers)
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


async def run(suite: RunningSuite, args) -> dict[str, list[float]]:
    client = PurchaseClient(suite.gateway_url, suite.admin_key)
    await client.open(args.connections)
    try:
        customers = await _customers(suite, args.customers)
        await _sla_policy(suite, customers)
        for route in ROUTES:  # warm up both
            await _round(client, route, customers, 2, args.connections)
        results: dict[str, list[float]] = {route: [] for route in ROUTES}
        for n in range(args.repeat):
            for route in ROUTES if n % 2 == 0 else tuple(reversed(ROUTES)):
                rate, failed = await _round(client, route, customers, args.seconds, args.connections)
                assert failed == 0, f"{failed} requests to {route} failed"
                results[route].append(rate)
        return results
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per route")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--customers", type=int, default=50)
    args = parser.parse_args()
    database_urls, drops = asyncio.run(postgres_databases("tickets"))
    print("databases:", "PostgreSQL" if database_urls else "SQLite")
    suite = RunningSuite(Path(tempfile.mkdtemp()) / "var", database_urls or None)
    suite.start()
    try:
        import uvloop

        results = uvloop.run(run(suite, args))
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
    ratio = medians["/v1/tickets"] / medians["/v1/interactions"]
    print(f"\ntickets / interactions: {ratio:.2f}x (target ≥ 0.5x): {'met' if ratio >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
