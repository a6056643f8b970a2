"""engage's sender: how fast queued marketing email reaches an SMTP server (issue 13's
target: 10,000 messages at >= 500 messages/s to the in-process SMTP server).

A fresh engage database (SQLite in a temporary directory, or BENCH_DATABASE_URL for
PostgreSQL) with N customers, each with an email address and marketing consent on email;
N marketing messages queued through `queue_email` (the consent and frequency-cap gate, as
staff's and value's mail pass it); then the sender (services/engage/outbound/sender.py)
drains the queue into an aiosmtpd server running in this process (its own thread, as the
tests run it): claims in batches, builds each message with its List-Unsubscribe link,
sends over `--connections` SMTP connections, marks them sent and writes their events to
the outbox. Reported: queueing time, the gate's per-message p50/p99, and sending
messages/s (from the first claim to the last message recorded sent).

Run: `.venv/bin/python -m bench.mail_bench [--messages 10000] [--batch 200] [--connections 4]
[--backend smtp|file] [--repeat 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlalchemy import func, insert, select

from services.engage.consent.models import ConsentState
from services.engage.contacts.models import Contact
from services.engage.conversations.models import Message
from services.engage.models import messaging
from services.engage.outbound.queue import queue_email
from services.engage.outbound.sender import Sender
from shared.db.database import Database
from shared.db.migrations import upgrade
from shared.db.uow import transaction
from shared.service.tuning import tune_interpreter
from shared.settings import EngageSettings, set_current
from tests.support import free_port


class Counter:
    """An SMTP server that accepts everything and counts what it got."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


@dataclass
class _Runtime:
    settings: EngageSettings
    db: Database


async def _seed(db: Database, n: int, now: datetime) -> list[str]:
    ids = [f"{number:08d}-0000-7000-8000-000000000000" for number in range(n)]
    async with transaction(db.writer) as session:
        for start in range(0, n, 1000):
            chunk = ids[start : start + 1000]
            await session.execute(
                insert(Contact),
                [
                    {
                        "customer_id": cid,
                        "name": f"Customer {cid[:8]}",
                        "email": f"c{cid[:8]}@example.com",
                        "email_key": f"c{cid[:8]}@example.com",
                        "updated_at": now,
                    }
                    for cid in chunk
                ],
            )
            await session.execute(
                insert(ConsentState),
                [
                    {
                        "customer_id": cid,
                        "purpose": "marketing",
                        "channel": "email",
                        "granted": True,
                        "entry_id": cid,
                        "changed_at": now,
                    }
                    for cid in chunk
                ],
            )
    return ids


async def _queue(db: Database, ids: list[str], now: datetime) -> list[float]:
    """Queue one marketing message per customer; the gate's time per message (seconds)."""

    timings = []
    for start in range(0, len(ids), 500):
        async with transaction(db.writer) as session:
            for cid in ids[start : start + 500]:
                began = time.perf_counter()
                await queue_email(
                    session,
                    customer_id=cid,
                    subject="Spring offer",
                    body="Hello,\n\nour spring offer is here.\n\nUnsubscribe: https://crm.example/v1/unsubscribe/x\n",
                    purpose="marketing",
                    now=now,
                )
                timings.append(time.perf_counter() - began)
    return timings


async def once(args: argparse.Namespace) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="mail-bench-"))
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{workdir / 'engage.db'}"
    await asyncio.to_thread(upgrade, "engage", url)
    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=free_port())
    controller.start()
    db = Database.connect(url, service="engage")
    db.info["messaging"] = messaging
    try:
        settings = EngageSettings(
            var_dir=workdir,
            database_url=url,
            smtp_url=SecretStr(f"smtp://127.0.0.1:{controller.port}") if args.backend == "smtp" else None,
            mail_batch=args.batch,
            mail_connections=args.connections,
        )
        set_current(settings)  # as a running engage has them: read once, not per call
        tune_interpreter(settings)  # engage's GIL switch interval (the SMTP server is a thread here)
        now = datetime.now(UTC) - timedelta(seconds=1)
        ids = await _seed(db, args.messages, now)
        began = time.perf_counter()
        gate = await _queue(db, ids, now)
        queued_s = time.perf_counter() - began

        sender = Sender(_Runtime(settings, db))  # type: ignore[arg-type]
        began, cpu = time.perf_counter(), time.process_time()
        while await sender.send_due():
            continue
        sending_s, cpu_s = time.perf_counter() - began, time.process_time() - cpu
        await sender.transport.close()
        async with db.reader() as session:
            sent = await session.scalar(select(func.count()).select_from(Message).where(Message.status == "sent"))
        assert sent == args.messages, f"{sent} of {args.messages} sent"
        if args.backend == "smtp":
            assert counter.received == args.messages, f"the server got {counter.received}"
        gate_ms = sorted(t * 1000 for t in gate)
        return {
            "queued_s": queued_s,
            "gate_p50_ms": statistics.median(gate_ms),
            "gate_p99_ms": gate_ms[int(len(gate_ms) * 0.99) - 1],
            "sending_s": sending_s,
            "per_s": args.messages / sending_s,
            # The process's CPU (the sender and the SMTP server's thread) per message: on a
            # shared machine it says more than the wall clock.
            "cpu_ms": cpu_s * 1000 / args.messages,
        }
    finally:
        await db.dispose()
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backend", choices=("smtp", "file"), default="smtp")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    where = "PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite"
    print(
        "| run | messages | backend | db | batch | connections | queued (s) | gate p50 (ms) | gate p99 (ms) "
        "| sending (s) | messages/s | CPU ms/message |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for run in range(args.repeat):
        load = os.getloadavg()[0]
        r = asyncio.run(once(args))
        print(
            f"| {run + 1} | {args.messages} | {args.backend} | {where} | {args.batch} | {args.connections} "
            f"| {r['queued_s']:.1f} | {r['gate_p50_ms']:.2f} | {r['gate_p99_ms']:.2f} | {r['sending_s']:.1f} "
            f"| {r['per_s']:,.0f} | {r['cpu_ms']:.2f} |",
            flush=True,
        )
        print(f"  (load average {load:.1f} before the run, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
