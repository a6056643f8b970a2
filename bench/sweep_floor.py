"""The floor of a sweep that moves nearly everyone, on SQLite: its writes and nothing else.

The first sweep over 1,000,000 imported customers (bench/lifecycle_sweep_bench.py) moves
~93% of them, and every move must leave a history row and a `crm.lifecycle.stage.changed`
event in the outbox (issue 15: every transition keeps its reason, in the history and in the
event), besides the stage and churn risk of every customer. This measures only those writes,
with raw `sqlite3` (the same schema, migrated; the same pragmas; chunks of 5,000 customers, one
transaction each, as the sweep commits), from parameter tuples built before the clock starts: no
rule evaluation, no SQLAlchemy, no event building. Whatever a sweep does, it cannot beat this
on this machine.

Run: `.venv/bin/python -m bench.sweep_floor [--customers 1000000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.lifecycle_sweep_bench import NOW, fill
from services.lifecycle.models import messaging
from shared.db.database import Database
from shared.db.migrations import upgrade

CHUNK = 5_000
MOVED = 0.93  # the share of customers the first sweep over the bench's data moves (926,667 of 1,000,000)


def _iso(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def params(n: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    at = _iso(NOW)
    risks, history, outbox = [], [], []
    drivers = orjson.dumps({"probability_alive": 0.31, "recency_ratio": 2.4, "detractor": False, "escalated": False})
    values = orjson.dumps({"days_since_last_purchase": 412, "expected_interval_days": 37.5, "purchase_count": 4})
    for i in range(n):
        cid = f"00000000-0000-7000-8000-{i:012d}"
        risks.append(("at_risk", at, at, 0.62, "high", 812.4, drivers, at, cid))
        if i % 100 < MOVED * 100:
            event_id = str(uuid.uuid4())
            history.append((cid, "active", "at_risk", at, event_id, "quiet_too_long", 1, values, 1))
            body = orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": event_id,
                    "source": "valuechain/lifecycle",
                    "type": "crm.lifecycle.stage.changed",
                    "subject": cid,
                    "time": NOW.isoformat(),
                    "datacontenttype": "application/json",
                    "dataschema": "urn:valuechain:event:crm.lifecycle.stage.changed:v1",
                    "causationid": "sweep:0193a5b2-0000-7000-8000-000000000000",
                    "data": {
                        "customer_id": cid,
                        "from_stage": "active",
                        "to_stage": "at_risk",
                        "at": NOW.isoformat(),
                        "rule": "quiet_too_long",
                        "rule_version": 1,
                        "historical": True,
                        "values": orjson.loads(values),
                        "cause_event_id": "sweep:0193a5b2-0000-7000-8000-000000000000",
                    },
                }
            )
            outbox.append((event_id, "crm.lifecycle.stage.changed", body, at, 0))
    return risks, history, outbox


UPDATE = (
    "UPDATE customer_stages SET stage=?, stage_since=?, updated_at=?, churn_risk=?, churn_band=?, "
    "clv_at_risk=?, risk_drivers=?, risk_at=? WHERE customer_id=?"
)
HISTORY = (
    'INSERT INTO stage_transitions (customer_id, from_stage, to_stage, at, event_id, rule, rule_version, "values", '
    "historical) VALUES (?,?,?,?,?,?,?,?,?)"
)
OUTBOX = "INSERT INTO outbox (event_id, subject, body, created_at, attempts) VALUES (?,?,?,?,?)"


def writes(path: Path, risks, history, outbox) -> dict[str, float]:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    spent = {"stages and risks": 0.0, "history": 0.0, "outbox": 0.0, "commit": 0.0}
    h = o = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(risks), CHUNK):
        chunk = risks[start : start + CHUNK]
        last = chunk[-1][-1]
        h_end = h
        while h_end < len(history) and history[h_end][0] <= last:
            h_end += 1
        connection.execute("BEGIN IMMEDIATE")
        for name, sql, rows in (
            ("stages and risks", UPDATE, chunk),
            ("history", HISTORY, history[h:h_end]),
            ("outbox", OUTBOX, outbox[o : o + (h_end - h)]),
        ):
            began = time.process_time()
            connection.executemany(sql, rows)
            spent[name] += time.process_time() - began
        began = time.process_time()
        connection.execute("COMMIT")
        spent["commit"] += time.process_time() - began
        o += h_end - h
        h = h_end
    spent["wall"] = time.perf_counter() - wall
    spent["cpu"] = time.process_time() - cpu
    connection.close()
    return spent


async def prepare(path: Path, n: int) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, "lifecycle", url)
    db = Database.connect(url, service="lifecycle")
    db.info.update({"messaging": messaging, "notify": lambda: None})
    try:
        await fill(db, n)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "lifecycle.db"
        asyncio.run(prepare(path, args.customers))
        risks, history, outbox = params(args.customers)
        print(f"{len(risks):,} stage and risk updates, {len(history):,} history rows, {len(outbox):,} outbox events")
        spent = writes(path, risks, history, outbox)
        print(" | ".join(f"{name} {seconds:.1f} s" for name, seconds in spent.items()))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
