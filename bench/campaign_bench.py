"""A campaign's launch and results at scale (issue 14): value in-process on a real
nats-server, its read models seeded in bulk with N customers (profiles, marketing consent on
email) and 2N purchases.

- launch: `POST /v1/campaigns/{id}/launch` over all N (10% holdout): every member recorded,
  every treatment offer issued (50,000 customers a transaction) with one
  `crm.value.offer.issued` each, and one `crm.value.messages.requested` per 500 treatment
  customers; then the seconds until the outbox relay has published every event to JetStream
  (target: under 60 s for 1,000,000);
- results: `GET /v1/campaigns/{id}/results` over the N members and 2N purchases (target < 5 s).

Run: `.venv/bin/python -m bench.campaign_bench --customers 1000000` (SQLite by default;
`VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…` for PostgreSQL, as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.value.campaigns.models import MarketingConsent, Purchase
from services.value.models import profiles
from shared.db.bulk import bulk_insert
from shared.db.uow import transaction
from shared.events.contracts import MAX_RECIPIENTS
from tests.support import NatsServer, Suite

CHUNK = 100_000


def _id(n: int) -> str:
    return f"00000000-0000-7000-8000-{n:012d}"


async def _seed_customers(value, customers: int, launched: datetime) -> None:
    rng = random.Random(14)
    columns = ("customer_id", "segment", "kinds", "predicted_clv", "probability_alive", "stage", "purchases")
    for start in range(0, customers, CHUNK):
        ids = range(start, min(start + CHUNK, customers))
        async with transaction(value.runtime.db.writer) as session:
            await bulk_insert(
                session,
                profiles.table,
                columns,
                [(_id(n), "champions", ",", rng.uniform(50, 500), rng.random(), "active", 3) for n in ids],
            )
            await bulk_insert(
                session,
                MarketingConsent.__table__,
                ("customer_id", "channel", "granted", "changed_at"),
                [(_id(n), "email", True, launched - timedelta(days=30)) for n in ids],
            )


async def _seed_purchases(value, customers: int, purchases: int, launched: datetime) -> None:
    """Purchases of random customers over the month before and after launch; one in 50 voided."""

    rng = random.Random(15)
    for start in range(0, purchases, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, purchases)):
            at = launched + timedelta(minutes=rng.randrange(-60 * 24 * 30, 60 * 24 * 30))
            rows.append((f"t-{n}", _id(rng.randrange(customers)), round(rng.uniform(5, 200), 2), 0.0, n % 50 == 0, at))
        async with transaction(value.runtime.db.writer) as session:
            await bulk_insert(
                session,
                Purchase.__table__,
                ("transaction_id", "customer_id", "amount", "refunded", "voided", "occurred_at"),
                rows,
            )


async def run(customers: int, purchases: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    server = NatsServer(tmp / "jetstream")
    server.start()
    try:
        async with AsyncExitStack() as stack:
            suite = Suite(server, tmp, stack)
            value = await suite.start("value")
            client = value.client
            seeded = time.perf_counter()
            await _seed_customers(value, customers, datetime.now(UTC))
            print(f"seeded {customers:,} customers in {time.perf_counter() - seeded:.1f} s")
            template = (
                await client.post(
                    "/v1/offer-templates",
                    json={"kind": "percent_off", "title": "10%", "percent_off": "10", "cost": "1"},
                )
            ).json()
            body = {
                "name": "bench",
                "channel": "email",
                "template_id": template["id"],
                "message_template_id": "tpl",
                "holdout_share": 0.1,
                "audience": {"segments": ["champions"]},
            }
            campaign = (await client.post("/v1/campaigns", json=body)).json()
            started = time.perf_counter()
            launched = await client.post(f"/v1/campaigns/{campaign['id']}/launch", timeout=600)
            launch_s = time.perf_counter() - started
            assert launched.status_code == 200, launched.text
            answer = launched.json()
            relay = value.runtime.relay
            while await relay.pending_count():
                await asyncio.sleep(0.2)
            published_s = time.perf_counter() - started
            events = answer["treatment"] + math.ceil(answer["treatment"] / MAX_RECIPIENTS)
            print(
                f"launch over {customers:,} customers ({answer['treatment']:,} treatment, {answer['holdout']:,} "
                f"holdout): committed in {launch_s:.1f} s; all {events:,} events published "
                f"after {published_s:.1f} s"
            )
            launch_at = datetime.fromisoformat(answer["launched_at"])
            seeded = time.perf_counter()
            await _seed_purchases(value, customers, purchases, launch_at)
            print(f"seeded {purchases:,} purchases in {time.perf_counter() - seeded:.1f} s")
            for _ in range(3):
                started = time.perf_counter()
                results = await client.get(f"/v1/campaigns/{campaign['id']}/results", timeout=600)
                elapsed = time.perf_counter() - started
                assert results.status_code == 200, results.text
                uplift = results.json()["uplift"]["revenue_per_customer"]
                print(f"results over {customers:,} members and {purchases:,} purchases: {elapsed:.2f} s ({uplift})")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # a million customers' run leaves ~4 GB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=None, help="default: twice the customers")
    args = parser.parse_args(argv)
    asyncio.run(run(args.customers, args.purchases or 2 * args.customers))


if __name__ == "__main__":
    main()
