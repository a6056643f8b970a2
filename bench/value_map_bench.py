"""The value map's read: how long `GET /v1/value-map` takes to compute over N ratings
(services/value/perceived: one GROUP BY over the ratings in the window, then arithmetic on
a few thousand groups). value's schema at head on a fresh SQLite file, 5 competitors, the
5 default attributes, N ratings over 24 months across the RFM segments (2% naming a
competitor value does not list). Times the whole map, one segment, and a 3-month window.

Run: `.venv/bin/python -m bench.value_map_bench` (BENCH_RATINGS, default 200,000; BENCH_REPEATS, 5).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.perceived import service
from services.value.perceived.models import ValueRating
from services.value.perceived.schemas import CompetitorCreate
from shared.db.database import Database
from shared.db.migrations import upgrade
from shared.db.uow import transaction
from shared.events.customer_profiles import RFM_SEGMENTS

RATINGS = int(os.environ.get("BENCH_RATINGS", "200000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
CHUNK = 20_000
COMPETITORS = ("Acme", "Globex", "Initech", "Hooli", "Umbrella")
ATTRIBUTES = ("quality", "service", "price", "image", "relationship")
START = datetime(2025, 1, 1, tzinfo=UTC)


async def load(db: Database, n: int) -> float:
    async with transaction(db.writer) as session:
        for name in COMPETITORS:
            await service.create_competitor(session, data=CompetitorCreate(name=name))
    subjects = ["us", *(name.lower() for name in COMPETITORS), "unlisted"]
    # us and the five competitors equally, 2% the unlisted one.
    weights = np.array([0.98 / 6] * 6 + [0.02])
    rng = np.random.default_rng(14)
    started = time.perf_counter()
    for offset in range(0, n, CHUNK):
        k = min(CHUNK, n - offset)
        subject = rng.choice(len(subjects), k, p=weights)
        attribute = rng.integers(0, len(ATTRIBUTES), k)
        score = rng.integers(1, 11, k)
        segment = rng.integers(0, len(RFM_SEGMENTS), k)
        seconds = rng.integers(0, 730 * 86400, k)
        rows = []
        for i in range(k):
            at = START + timedelta(seconds=int(seconds[i]))
            rows.append(
                {
                    "id": f"r{offset + i:09d}",
                    "customer_id": f"c{(offset + i) // 5:08d}",
                    "attribute_key": ATTRIBUTES[attribute[i]],
                    "subject_key": subjects[subject[i]],
                    "score": int(score[i]),
                    "segment": RFM_SEGMENTS[segment[i]],
                    "rated_at": at,
                    "month": at.strftime("%Y-%m"),
                    "source": "survey",
                    "response_id": None,
                }
            )
        async with transaction(db.writer) as session:
            await session.execute(ValueRating.__table__.insert(), rows)
    return time.perf_counter() - started


async def timed(db: Database, **window) -> tuple[list[float], dict]:
    runs, body = [], {}
    for _ in range(REPEATS):
        async with db.reader() as session:
            started = time.perf_counter()
            # An InlineSession on SQLite, as the API's ReadSession: it offers what a read needs.
            body = await service.the_value_map(cast(AsyncSession, session), **window)
            runs.append(time.perf_counter() - started)
    return runs, body


async def run(n: int) -> None:
    path = Path(tempfile.mkdtemp()) / "value.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade("value", url)
    db = Database.connect(url, service="value")
    try:
        loaded = await load(db, n)
        print(f"value map: {n:,} ratings loaded in {loaded:.1f} s (SQLite, {path})")
        print("| map | ratings mapped | median ms | runs (ms) |")
        print("|---|---|---|---|")
        for label, window in (
            ("whole (24 months)", {"segment": None, "since": None, "until": None}),
            ("one segment", {"segment": "champions", "since": None, "until": None}),
            ("3 months", {"segment": None, "since": date(2026, 10, 1), "until": date(2026, 12, 31)}),
        ):
            runs, body = await timed(db, **window)
            shown = ", ".join(f"{r * 1000:.0f}" for r in runs)
            print(f"| {label} | {body['ratings']:,} | {statistics.median(runs) * 1000:.0f} | {shown} |")
    finally:
        await db.dispose()


def main() -> None:
    asyncio.run(run(RATINGS))


if __name__ == "__main__":
    main()
