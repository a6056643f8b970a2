"""The consent and frequency check every outbound marketing send passes
(services/engage/consent/rules.py `check_marketing`: one primary-key lookup of the
customer's consent state, one range of ix_messages_marketing counted up to the cap) on an
engage database with many customers and messages. Target (issue 13): p99 under 1 ms.

1. makes a fresh engage database with its migrations (a SQLite file, or a throw-away
   database on PostgreSQL with `--postgres postgresql+asyncpg://user@host:port/postgres`);
2. fills it: `--customers` (50,000) with a marketing consent state on email (90% granted)
   and its ledger entry, and `--messages` (500,000) over the last 30 days, a third of
   them marketing email, in several statuses;
3. runs `--checks` (5,000) checks for random customers inside a writer transaction, as
   queue_email does, each in a fresh identity map (nothing cached between checks), after
   `--warmup` (500), and prints p50/p99/p99.9/max in ms and the outcomes.

Run: `.venv/bin/python -m bench consent` or `.venv/bin/python -m bench.consent_bench --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.engage.consent import rules
from services.engage.consent.models import ConsentEntry, ConsentState
from services.engage.conversations.models import Message
from shared.db.database import Database
from shared.db.ids import uuid7_many
from shared.db.migrations import upgrade
from shared.http.errors import Conflict
from shared.settings import EngageSettings, set_current

CHUNK = 5_000


async def _fill(db: Database, customers: int, messages: int, now: datetime, rng: random.Random) -> list[str]:
    ids = uuid7_many(customers)
    async with db.writer_engine.begin() as conn:
        for start in range(0, customers, CHUNK):
            chunk = ids[start : start + CHUNK]
            entry_ids = uuid7_many(len(chunk))
            granted = [rng.random() < 0.9 for _ in chunk]
            at = now - timedelta(days=90)
            await conn.execute(
                insert(ConsentEntry),
                [
                    {
                        "id": e,
                        "customer_id": c,
                        "purpose": "marketing",
                        "channel": "email",
                        "granted": g,
                        "legal_basis": "consent",
                        "source": "bench",
                        "notice_version": "v1",
                        "changed_at": at,
                        "recorded_at": at,
                    }
                    for c, e, g in zip(chunk, entry_ids, granted)
                ],
            )
            await conn.execute(
                insert(ConsentState),
                [
                    {
                        "customer_id": c,
                        "purpose": "marketing",
                        "channel": "email",
                        "granted": g,
                        "entry_id": e,
                        "changed_at": at,
                    }
                    for c, e, g in zip(chunk, entry_ids, granted)
                ],
            )
        channels = ("email", "email", "email", "sms", "chat")
        statuses = ("sent", "sent", "sent", "queued", "failed", "bounced", "recorded")
        for start in range(0, messages, CHUNK):
            rows = []
            for message_id in uuid7_many(min(CHUNK, messages - start)):
                created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
                rows.append(
                    {
                        "id": message_id,
                        "customer_id": rng.choice(ids),
                        "channel": rng.choice(channels),
                        "direction": "outbound",
                        "purpose": "marketing" if rng.random() < 0.5 else "service",
                        "status": rng.choice(statuses),
                        "attempts": 1,
                        "occurred_at": created,
                        "created_at": created,
                    }
                )
            await conn.execute(insert(Message), rows)
    return ids


async def _checks(
    db: Database, ids: list[str], n: int, now: datetime, rng: random.Random
) -> tuple[list[float], list[float], dict]:
    """Each check's wall time and this thread's CPU time (the wall time includes the waits of
    a busy machine's scheduler; the CPU time does not), and the outcomes."""

    outcomes: dict[str, int] = {}
    times: list[float] = []
    cpu: list[float] = []
    async with db.writer() as session:
        for _ in range(n):
            customer_id = rng.choice(ids)
            session.expunge_all()  # every check reads the database, as a new request would
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                await rules.check_marketing(session, customer_id=customer_id, channel="email", now=now)
                outcome = "allowed"
            except Conflict as refused:
                outcome = refused.error
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await session.rollback()
    return times, cpu, outcomes


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(args: argparse.Namespace) -> None:
    set_current(EngageSettings())  # as inside the app: the caps are read from the app's settings
    rng = random.Random(13)
    now = datetime.now(UTC)
    drop = None
    if args.postgres:
        admin = make_url(args.postgres)
        name = f"consent_bench_{uuid4().hex[:8]}"
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin.set(database=name).render_as_string(hide_password=False)

        async def drop() -> None:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await engine.dispose()
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'engage.db'}"
    try:
        await asyncio.to_thread(upgrade, "engage", url)
        db = Database.connect(url, service="engage")
        try:
            started = time.perf_counter()
            ids = await _fill(db, args.customers, args.messages, now, rng)
            print(
                f"filled {args.customers:,} customers and {args.messages:,} messages in "
                f"{time.perf_counter() - started:.1f} s ({make_url(url).get_backend_name()})"
            )
            await _checks(db, ids, args.warmup, now, rng)
            for run_number in range(args.repeat):
                times, cpu, outcomes = await _checks(db, ids, args.checks, now, rng)
                print(
                    f"run {run_number + 1}: {len(times):,} checks: wall p50 {_ms(times, 0.5):.3f} ms, "
                    f"p99 {_ms(times, 0.99):.3f} ms, p99.9 {_ms(times, 0.999):.3f} ms, max {max(times) * 1000:.3f} ms, "
                    f"mean {statistics.fmean(times) * 1000:.3f} ms; CPU p50 {_ms(cpu, 0.5):.3f} ms, "
                    f"p99 {_ms(cpu, 0.99):.3f} ms; {outcomes}"
                )
        finally:
            await db.dispose()
    finally:
        if drop is not None:
            await drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--checks", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", help="an admin URL: a throw-away database is made there")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
