"""Next best offer's latency (issue 14: p99 under 20 ms): value in-process on a real
nats-server, its read models seeded in bulk: N customers across the RFM segments (profiles
with an expected spend, marketing consent on email, known to value), T offer templates,
and M offers issued from them with about 8% redeemed (the response counts built from them
as the migration does). Then R sequential `GET /v1/customers/{id}/next-best-offer` for
random customers through value's HTTP app: p50, p90, p99 and max.

Run: `.venv/bin/python -m bench.nbo_bench` (SQLite by default;
`VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…` for PostgreSQL, as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from services.value.campaigns.models import MarketingConsent
from services.value.models import Offer, known_customers, profiles
from shared.db.bulk import bulk_insert
from shared.db.uow import transaction
from tests.support import NatsServer, Suite

CHUNK = 100_000
SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
)
COUNTS_SQL = (
    "INSERT INTO offer_response_counts (template_id, segment, issued, redeemed) "
    "SELECT template_id, COALESCE(segment, ''), COUNT(*), SUM(CASE WHEN status = 'redeemed' THEN 1 ELSE 0 END) "
    "FROM offers WHERE template_id IS NOT NULL GROUP BY template_id, COALESCE(segment, '')"
)


def _id(n: int) -> str:
    return f"00000000-0000-7000-8000-{n:012d}"


async def _seed(value, customers: int, templates: list[str], offers: int) -> None:
    rng = random.Random(14)
    now = datetime.now(UTC)
    segment_of = [SEGMENTS[rng.randrange(len(SEGMENTS))] for _ in range(customers)]
    for start in range(0, customers, CHUNK):
        ids = range(start, min(start + CHUNK, customers))
        async with transaction(value.runtime.db.writer) as session:
            await bulk_insert(session, known_customers.table, ("id", "created_at"), [(_id(n), now) for n in ids])
            await bulk_insert(
                session,
                profiles.table,
                ("customer_id", "segment", "kinds", "expected_spend", "purchases"),
                [(_id(n), segment_of[n], ",", rng.uniform(10, 200), 3) for n in ids],
            )
            await bulk_insert(
                session,
                MarketingConsent.__table__,
                ("customer_id", "channel", "granted", "changed_at"),
                [(_id(n), "email", True, now - timedelta(days=30)) for n in ids],
            )
    columns = ("id", "customer_id", "kind", "title", "status", "issued_at", "template_id", "segment")
    for start in range(0, offers, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, offers)):
            customer = rng.randrange(customers)
            status = "redeemed" if rng.random() < 0.08 else "issued"
            rows.append(
                (
                    f"o-{n}",
                    _id(customer),
                    "percent_off",
                    "bench",
                    status,
                    now,
                    rng.choice(templates),
                    segment_of[customer],
                )
            )
        async with transaction(value.runtime.db.writer) as session:
            await bulk_insert(session, Offer.__table__, columns, rows)
    async with transaction(value.runtime.db.writer) as session:
        await session.execute(text(COUNTS_SQL))


async def run(customers: int, templates: int, offers: int, requests: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    server = NatsServer(tmp / "jetstream")
    server.start()
    try:
        async with AsyncExitStack() as stack:
            value = await Suite(server, tmp, stack).start("value")
            client = value.client
            ids = []
            for n in range(templates):
                body = {"kind": "percent_off", "title": f"{n}% off", "percent_off": str(1 + n % 50), "cost": "1.50"}
                ids.append((await client.post("/v1/offer-templates", json=body)).json()["id"])
            seeded = time.perf_counter()
            await _seed(value, customers, ids, offers)
            print(
                f"seeded {customers:,} customers, {templates} templates, {offers:,} offers "
                f"in {time.perf_counter() - seeded:.1f} s"
            )
            rng = random.Random(7)
            for _ in range(50):  # warm up
                await client.get(f"/v1/customers/{_id(rng.randrange(customers))}/next-best-offer")
            latencies = []
            for _ in range(requests):
                path = f"/v1/customers/{_id(rng.randrange(customers))}/next-best-offer"
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
            cuts = statistics.quantiles(latencies, n=100)
            print(
                f"next best offer over {templates} templates, {requests:,} requests: p50 {cuts[49]:.2f} ms, "
                f"p90 {cuts[89]:.2f} ms, p99 {cuts[98]:.2f} ms, max {max(latencies):.2f} ms (target p99 < 20 ms)"
            )
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--templates", type=int, default=50)
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args(argv)
    asyncio.run(run(args.customers, args.templates, args.offers, args.requests))


if __name__ == "__main__":
    main()
