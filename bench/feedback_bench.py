"""The feedback report over a million responses: `GET /v1/feedback/report` through engage's
HTTP app, on SQLite (issue 13: under 2 s).

1. Loads a fresh engage SQLite database at head with `--responses` survey responses over two
   years (an RFM segment, a stage, a channel, kinds for one customer in five, NPS on every
   response, CSAT on half, CES on a third), inserted straight into the tables as the API
   writes them (`survey_responses` and one `survey_response_kinds` row per kind). Loading is
   timed separately and is not part of the numbers.
2. Serves engage's app in-process (httpx's ASGITransport: the app's own time, with FastAPI
   validation and the JSON answer, without a socket) and asks each report shape `--repeat`
   times after one warm-up: every metric by every grouping over the whole range, and NPS by
   segment over the last 90 days.
3. Prints the median and the slowest run per shape against the 2 s target.

Run: `.venv/bin/python -m bench.feedback_bench [--responses N] [--repeat K] [--db PATH [--reuse]]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from services.identify.analysis.rfm import SEGMENTS
from services.identify.portfolio.scoring import KINDS

TARGET_S = 2.0
CHUNK = 50_000
END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 730
STAGES = ["new", "active", "loyal", "at_risk", "churned", "won_back"]
CHANNELS = [None, "email", "chat", "phone", "sms", "social", "in_person"]
SURVEY_ID = "00000000-0000-7000-8000-000000000001"


def _iso(seconds: np.ndarray) -> list[str]:
    base = END - timedelta(days=DAYS)
    # As SQLAlchemy writes a datetime into SQLite (UTC, no zone).
    return [(base + timedelta(seconds=int(s))).strftime("%Y-%m-%d %H:%M:%S.%f") for s in seconds]


def load(path: Path, responses: int, seed: int) -> dict:
    """engage's schema at head, then `responses` generated responses (see the module doc)."""

    from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
    from sqlalchemy.schema import CreateIndex

    from services.engage.feedback.models import ResponseKind, SurveyResponse
    from shared.db.migrations import upgrade

    upgrade("engage", f"sqlite+aiosqlite:///{path}")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    # The report's covering indexes, built once at the end rather than row by row.
    report_indexes = [
        index
        for table in (SurveyResponse.__table__, ResponseKind.__table__)
        for index in table.indexes
        if index.name and "_by_" in index.name
    ]
    for index in report_indexes:
        db.execute(f"DROP INDEX {index.name}")
    db.execute(
        "INSERT INTO surveys (id, name, questions, triggers, active, created_at) VALUES (?, ?, ?, ?, 1, ?)",
        (SURVEY_ID, "bench", '[{"id": "nps", "type": "nps", "text": "?"}]', "[]", _iso(np.array([0]))[0]),
    )
    kinds_rows = 0
    for offset in range(0, responses, CHUNK):
        n = min(CHUNK, responses - offset)
        at = _iso(np.sort(rng.integers(0, DAYS * 86400, n)))
        segment = rng.integers(0, len(SEGMENTS), n)
        stage = rng.integers(0, len(STAGES), n)
        channel = rng.integers(0, len(CHANNELS), n)
        # NPS skewed toward the top, as real answers are.
        nps = rng.choice(11, n, p=np.array([2, 1, 1, 2, 2, 4, 6, 10, 18, 22, 32]) / 100)
        csat = np.where(rng.random(n) < 0.5, rng.integers(1, 6, n), -1)
        ces = np.where(rng.random(n) < 0.33, rng.integers(1, 8, n), -1)
        has_kinds = rng.random(n) < 0.2
        rows: list[tuple] = []
        kind_rows: list[tuple] = []
        for i in range(n):
            rid = f"r{offset + i:035d}"
            kinds = sorted(set(rng.choice(KINDS, rng.integers(1, 3)))) if has_kinds[i] else []
            c = int(csat[i]) if csat[i] > 0 else None
            e = int(ces[i]) if ces[i] > 0 else None
            rows.append(
                (
                    rid,
                    SURVEY_ID,
                    f"c{offset + i}",
                    "link",
                    CHANNELS[channel[i]],
                    STAGES[stage[i]],
                    SEGMENTS[segment[i]],
                    "," + ",".join(kinds) + ",",
                    int(nps[i]),
                    c,
                    e,
                    at[i],
                    at[i][:7],
                )
            )
            kind_rows.extend((rid, kind, int(nps[i]), c, e, at[i]) for kind in (kinds or [None]))
        db.executemany(
            "INSERT INTO survey_responses (id, survey_id, customer_id, source, channel, stage, segment, kinds, "
            "nps, csat, ces, received_at, month) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO survey_response_kinds (response_id, kind, nps, csat, ces, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            kind_rows,
        )
        kinds_rows += len(kind_rows)
    db.commit()
    loaded = time.perf_counter() - started
    for index in report_indexes:
        db.execute(str(CreateIndex(index).compile(dialect=sqlite_dialect())))
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return {
        "responses": responses,
        "kind_rows": kinds_rows,
        "load_s": round(loaded, 1),
        "indexes_s": round(time.perf_counter() - started - loaded, 1),
    }


def shapes() -> dict[str, dict[str, str]]:
    found = {}
    for metric in ("nps", "csat", "ces"):
        for by in (None, "segment", "kind", "stage", "channel", "month"):
            found[f"{metric} by {by or 'nothing'}"] = {"metric": metric, **({"by": by} if by else {})}
    since = (END - timedelta(days=90)).isoformat().replace("+00:00", "Z")
    found["nps by segment, last 90 days"] = {"metric": "nps", "by": "segment", "from": since}
    return found


async def measure(path: Path, repeat: int) -> list[dict]:
    from services.engage.main import create_app
    from shared.internal_auth import load_or_create_internal_secret
    from shared.settings import SuiteSettings, service_settings
    from tests.support import NatsServer

    with tempfile.TemporaryDirectory() as scratch:
        nats = NatsServer(Path(scratch) / "js")
        nats.start()
        try:
            settings = service_settings(
                "engage", database_url=f"sqlite+aiosqlite:///{path}", nats_url=nats.address, var_dir=nats.var_dir
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                # engage answers only what carries the gateway's internal secret.
                secret = load_or_create_internal_secret(SuiteSettings(var_dir=nats.var_dir))
                headers = {"x-valuechain-internal": secret}
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://engage", timeout=60, headers=headers
                ) as client:
                    results = []
                    for name, params in shapes().items():
                        times = []
                        for run in range(repeat + 1):
                            started = time.perf_counter()
                            response = await client.get("/v1/feedback/report", params=params)
                            elapsed = time.perf_counter() - started
                            assert response.status_code == 200, response.text
                            if run:  # the first is the warm-up
                                times.append(elapsed)
                        cells = response.json()["cells"]
                        results.append(
                            {
                                "shape": name,
                                "median_s": round(statistics.median(times), 3),
                                "max_s": round(max(times), 3),
                                "cells": len(cells),
                                "responses": sum(c["responses"] for c in cells),
                            }
                        )
                        print(results[-1], flush=True)
                    return results
        finally:
            nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", type=Path, help="where to keep the database (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true", help="report from the database at --db without loading it")
    args = parser.parse_args()
    scratch = None
    path = args.db
    if path is None:
        scratch = tempfile.TemporaryDirectory()
        path = Path(scratch.name) / "engage.db"
    try:
        if not args.reuse:
            if path.exists():
                path.unlink()
            print(load(path, args.responses, args.seed), flush=True)
        results = asyncio.run(measure(path, args.repeat))
        print(f"\n| report | cells | responses counted | median s | slowest s | under {TARGET_S:.0f} s |")
        print("|---|---|---|---|---|---|")
        for r in results:
            ok = "yes" if r["max_s"] < TARGET_S else "**no**"
            cells = (r["shape"], r["cells"], r["responses"], r["median_s"], r["max_s"], ok)
            print("| " + " | ".join(str(cell) for cell in cells) + " |")
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
