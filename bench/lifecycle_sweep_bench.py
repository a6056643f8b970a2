"""lifecycle's stage sweep over many customers, and how long it stalls the event loop.

Fills a fresh lifecycle database (migrated) with `--customers` customers: a stage row and a
profile each (purchases 1-7, last purchase up to ~2 years ago, own gaps of 10-70 days,
probability alive and predicted CLV spread evenly), then runs the real sweep
(services/lifecycle/stages/sweeps.py `run`) three times, an hour apart in the rules' clock:

1. the first sweep over this imported history (many customers move; `historical`);
2. the next (customers already at risk move on to churned: one step per sweep);
3. a steady hourly sweep (few move).

Meanwhile a task sleeps 10 ms in a loop and records its worst lateness: the longest the
sweep held the event loop (what an API request in the same process would wait). CPU
seconds (the process's, threads included) tell the work apart from a busy machine's waits.

Run: `.venv/bin/python -m bench.lifecycle_sweep_bench [--customers 1000000] [--database-url URL]`.
Target (issue 15): a sweep over 1,000,000 customers < 20 s, without stalling the API.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.lifecycle.models import CustomerStage, messaging, profiles
from services.lifecycle.stages import sweeps
from shared.db.bulk import bulk_insert
from shared.db.database import Database
from shared.db.migrations import upgrade
from shared.db.uow import transaction
from shared.settings import LifecycleSettings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FILL_CHUNK = 50_000


def customer_rows(start: int, stop: int) -> tuple[list[tuple], list[tuple]]:
    stages, profile_rows = [], []
    for i in range(start, stop):
        cid = f"00000000-0000-7000-8000-{i:012d}"
        purchases = 1 + i % 7
        last = NOW - timedelta(days=(i * 7919) % 700, hours=i % 24)
        gap = 10 + (i * 13) % 60
        first = last - timedelta(days=(purchases - 1) * gap)
        stage = "new" if purchases == 1 else "active"
        stages.append((cid, stage, purchases, first, first))
        alive = ((i * 31) % 100) / 100
        clv = float((i * 17) % 2000)
        profile_rows.append((cid, purchases, first, last, alive, clv, 1.0, NOW))
    return stages, profile_rows


async def fill(db: Database, n: int) -> None:
    stage_columns = ("customer_id", "stage", "purchase_count", "updated_at", "stage_since")
    profile_columns = (
        "customer_id",
        "purchases",
        "first_purchase_at",
        "last_purchase_at",
        "probability_alive",
        "predicted_clv",
        "expected_purchases",
        "scored_at",
    )
    for start in range(0, n, FILL_CHUNK):
        stages, profile_rows = customer_rows(start, min(n, start + FILL_CHUNK))
        async with transaction(db.writer) as session:
            await bulk_insert(session, CustomerStage.__table__, stage_columns, stages)
            await bulk_insert(session, profiles.table, profile_columns, profile_rows)


class StallMonitor:
    """The worst lateness of a 10 ms sleep while it runs: the event loop's longest stall."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - began - 0.01)

    def __enter__(self) -> StallMonitor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def run(n: int, url: str | None, chunk: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'lifecycle.db'}"
        await asyncio.to_thread(upgrade, "lifecycle", url)
        db = Database.connect(url, service="lifecycle")
        db.info.update({"messaging": messaging, "notify": lambda: None})
        settings = LifecycleSettings(database_url=url, sweep_chunk=chunk)
        try:
            began = time.perf_counter()
            await fill(db, n)
            print(f"filled {n:,} customers in {time.perf_counter() - began:.1f} s ({db.url.split(':')[0]})")
            results = []
            for hour, name in enumerate(("first (imported history)", "second", "steady hourly")):
                with StallMonitor() as monitor:
                    began, cpu = time.perf_counter(), time.process_time()
                    record = await sweeps.run(db, settings, trigger="request", now=NOW + timedelta(hours=hour))
                    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
                results.append(
                    {
                        "sweep": name,
                        "evaluated": record["evaluated"],
                        "transitions": record["transitions"],
                        "risk_changes": record["risk_changes"],
                        "seconds": wall,
                        "cpu": cpu,
                        "stall_ms": monitor.worst * 1000,
                    }
                )
            return results
        finally:
            await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--chunk", type=int, default=LifecycleSettings().sweep_chunk)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.customers, args.database_url, args.chunk))
    print("\n| sweep | customers | transitions | risks rewritten | seconds | CPU seconds | longest loop stall (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['sweep']} | {r['evaluated']:,} | {r['transitions']:,} | {r['risk_changes']:,} "
            f"| {r['seconds']:.1f} | {r['cpu']:.1f} | {r['stall_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
