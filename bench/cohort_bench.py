"""The cohort matrix over 10,000,000 purchases (issue 15: under 5 s): lifecycle in-process on a
real nats-server, its purchase months seeded in bulk as its analytics consumer would leave them
after that many `crm.identify.transaction.recorded` events, then `GET /v1/lifecycle/cohorts`
through lifecycle's HTTP app, `--repeat` times.

The purchases are drawn per customer: a first month uniform over `--months`, 1 + a geometric
number of repeat purchases (mean `--mean-purchases` in all), each repeat some exponentially
distributed months after the first (buying fades, as CDNOW's does), the months capped at the
last. Only the distinct customer-months become rows (`purchase_months`), so the bench prints
both counts.

Run: `.venv/bin/python -m bench.cohort_bench` (SQLite by default;
`VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…` for PostgreSQL, as the tests do);
`--transactions 1000000` for a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.lifecycle.analytics.models import PurchaseMonth
from shared.db.bulk import bulk_insert
from shared.db.uow import transaction
from tests.support import NatsServer, Suite

CUSTOMERS_PER_CHUNK = 100_000
FIRST_MONTH = 2020 * 12  # January 2020
COLUMNS = ("customer_id", "month", "cohort", "purchases", "first_at")


def _id(n: int) -> str:
    return f"00000000-0000-7000-8000-{n:012d}"


def _chunk(rng: np.random.Generator, first: int, customers: int, months: int, mean: float):
    """The purchase-month rows of customers first..first+customers-1, and their purchase count."""

    cohort = rng.integers(0, months, customers)
    count = rng.geometric(1 / mean, customers)  # 1 + repeats, `mean` in all on average
    owner = np.repeat(np.arange(customers), count)
    offset = np.floor(rng.exponential(months / 6, owner.size)).astype(np.int64)
    offset[np.r_[0, np.cumsum(count)[:-1]]] = 0  # each customer's first purchase is in its cohort
    month = np.minimum(cohort[owner] + offset, months - 1)
    keys, per = np.unique(owner * months + month, return_counts=True)
    who, when = keys // months, keys % months
    day = rng.integers(0, 28 * 86_400, keys.size)
    rows = [
        (
            _id(first + int(c)),
            FIRST_MONTH + int(m),
            FIRST_MONTH + int(cohort[c]),
            int(p),
            datetime(2020 + int(m) // 12, int(m) % 12 + 1, 1, tzinfo=UTC) + timedelta(seconds=int(s)),
        )
        for c, m, p, s in zip(who, when, per, day, strict=True)
    ]
    return rows, int(count.sum())


async def _seed(lifecycle, transactions: int, months: int, mean: float) -> tuple[int, int, int]:
    rng = np.random.default_rng(15)
    bought = rows = customers = 0
    while bought < transactions:
        size = min(CUSTOMERS_PER_CHUNK, int((transactions - bought) / mean) + 1)
        chunk, purchases = _chunk(rng, customers, size, months, mean)
        async with transaction(lifecycle.runtime.db.writer) as session:
            await bulk_insert(session, PurchaseMonth.__table__, COLUMNS, chunk)
        bought, rows, customers = bought + purchases, rows + len(chunk), customers + size
    return bought, rows, customers


async def run(transactions: int, months: int, mean: float, repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    server = NatsServer(tmp / "jetstream")
    server.start()
    try:
        async with AsyncExitStack() as stack:
            lifecycle = await Suite(server, tmp, stack).start("lifecycle")
            started = time.perf_counter()
            bought, rows, customers = await _seed(lifecycle, transactions, months, mean)
            print(
                f"seeded {bought:,} purchases of {customers:,} customers as {rows:,} customer-months "
                f"({rows / bought:.0%} of the purchases) in {time.perf_counter() - started:.1f} s"
            )
            async with lifecycle.runtime.db.writer() as session:  # fresh statistics for the planner
                conn = await session.connection()
                await conn.exec_driver_sql("ANALYZE")
                await session.commit()
            seconds = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = await lifecycle.client.get("/v1/lifecycle/cohorts")
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            cohorts = response.json()["cohorts"]
            assert sum(c["size"] for c in cohorts) == customers
            print(
                f"cohort matrix ({len(cohorts)} cohorts × up to {len(cohorts[0]['months'])} months) "
                f"over {rows:,} rows: "
                f"median {statistics.median(seconds):.2f} s, runs {', '.join(f'{s:.2f}' for s in seconds)} "
                f"(target < 5 s for 10,000,000 purchases)"
            )
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=36, help="cohort months (from January 2020)")
    parser.add_argument("--mean-purchases", type=float, default=5.0, help="purchases per customer, on average")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(run(args.transactions, args.months, args.mean_purchases, args.repeat))


if __name__ == "__main__":
    main()
