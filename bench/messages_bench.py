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

import asyncio
import itertools
import json
import time

from bench.closed_loop import arguments, compare
from tests.e2e.harness import RunningSuite

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


def main() -> None:
    args = arguments(__doc__.splitlines()[0])

    async def prepare(suite: RunningSuite, args) -> list[str]:
        return await _customers(suite, args.customers)

    compare(
        args,
        tag="messages",
        routes=("/v1/messages", "/v1/interactions"),
        prepare=prepare,
        bodies=_bodies,
        name="messages / interactions",
    )


if __name__ == "__main__":
    main()
