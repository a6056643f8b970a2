"""POST /v1/messages (a message recorded on a logged channel, threaded into the customer's open
conversation) against POST /v1/interactions (the same customer, one row and its event), through
the gateway of the running suite, closed loop.

Each round runs `--connections` keep-alive connections writing as fast as they are answered for
`--seconds`, first one route then the other (the order alternating between rounds), `--repeat`
rounds; it prints each route's requests/s per round, the medians, and their ratio against the
issue's target (messages ≥ 0.5× interactions). The messages go to `--customers` customers, on
sms, chat and phone, inbound and outbound in turn: after the first message of a customer and
channel each one joins an open conversation, as in real use.

Run: `.venv/bin/python -m bench.messages_bench [--seconds 10] [--repeat 5] [--connections 16]`;
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

from bench.latency_bench import PurchaseClient
from tests.e2e.harness import RunningSuite, postgres_databases

CHANNELS = ("sms", "chat", "phone")


async def _customers(suite: RunningSuite, n: int) -> list[str]:
    import httpx

    async with httpx.AsyncClient(
        base_url=suite.gateway_url, headers={"Authorization": f"Bearer {suite.admin_key}"}, timeout=30
    ) as http:
        ids = []
        for i in range(n):
            response = await http.post("/v1/customers", json={"email": f"bench-{i}@example.com", "name": f"B {i}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        # engage knows a customer once crm.identify.customer.created is consumed.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = await http.get("/v1/interactions", params={"customer_id": ids[-1]})
            if probe.status_code == 200:
                return ids
            await asyncio.sleep(0.1)
        raise RuntimeError("engage did not learn the customers")


def _bodies(route: str, customers: list[str]):
    counter = itertools.count()
    while True:
        i = next(counter)
        customer = customers[i % len(customers)]
        channel = CHANNELS[(i // len(customers)) % len(CHANNELS)]
        direction = "inbound" if (i // (len(customers) * len(CHANNELS))) % 2 == 0 else "outbound"
        if route == "/v1/messages":
            body = {"customer_id": customer, "channel": channel, "direction": direction, "body": f"Message {i}"}
        else:
            body = {"customer_id": customer, "channel": channel, "direction": direction, "summary": f"Message {i}"}
        yield json.dumps(body).encode()


async def _round(client: PurchaseClient, route: str, customers: list[str], seconds: float, connections: int):
    bodies = _bodies(route, customers)
    done = 0
    failed = 0
    stop = time.monotonic() + seconds

    async def worker():
        nonlocal done, failed
        while time.monotonic() < stop:
            status = await client.post(route, next(bodies))
            if status == 201:
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
        routes = ["/v1/messages", "/v1/interactions"]
        await _round(client, routes[0], customers, 2, args.connections)  # warm up both
        await _round(client, routes[1], customers, 2, args.connections)
        results: dict[str, list[float]] = {route: [] for route in routes}
        for n in range(args.repeat):
            for route in routes if n % 2 == 0 else reversed(routes):
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
    database_urls, drops = asyncio.run(postgres_databases("messages"))
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
    ratio = medians["/v1/messages"] / medians["/v1/interactions"]
    print(f"\nmessages / interactions: {ratio:.2f}x (target ≥ 0.5x): {'met' if ratio >= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
