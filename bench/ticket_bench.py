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

import asyncio
import itertools
import json
import time

import httpx

from bench.closed_loop import arguments, compare
from bench.messages_bench import _customers
from tests.e2e.harness import RunningSuite

ROUTES: tuple[str, str] = ("/v1/tickets", "/v1/interactions")
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


def main() -> None:
    args = arguments(__doc__.splitlines()[0])

    async def prepare(suite: RunningSuite, args) -> list[str]:
        customers = await _customers(suite, args.customers)
        await _sla_policy(suite, customers)
        return customers

    compare(args, tag="tickets", routes=ROUTES, prepare=prepare, bodies=_bodies, name="tickets / interactions")


if __name__ == "__main__":
    main()
