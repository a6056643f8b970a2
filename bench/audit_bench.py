"""The audit log's writer: a synchronous insert per write against the queued batch writer.

What a request would wait for if the gateway appended its audit entry before answering
(one transaction each: the chain's lock, the head read, the insert, the commit), and
what the queued writer costs instead: the hook's time per request (an append to a
deque) and the writer's time per entry appending batches of `audit_batch`. On a fresh
SQLite file (the embedded default), and on PostgreSQL with `--postgres URL` (a server
database URL; a throw-away database is made in it). Run:
`.venv/bin/python -m bench.audit_bench [--entries 2000] [--postgres postgresql+asyncpg://...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import tests.support
from gateway.audit.writer import AuditWriter
from gateway.principal import BOOTSTRAP_ADMIN_ID, SCOPE_PRINCIPAL, Principal
from gateway.routes import r
from gateway.store import open_store
from shared.db.migrations import upgrade
from tests.support import make_database_url

ROUTE = r("PATCH", "/v1/customers/{id}", "identify")
SCOPE = {"method": "PATCH", SCOPE_PRINCIPAL: Principal(BOOTSTRAP_ADMIN_ID, "bootstrap", "admin", frozenset())}


def record(writer: AuditWriter, i: int) -> None:
    writer.record(SCOPE, ROUTE, f"/v1/customers/cus-{i}", 200, b"req-%d" % i, b"req-%d" % i)


async def measure(url: str, entries: int, batch: int) -> dict[str, float]:
    await asyncio.to_thread(upgrade, "gateway", url)
    store = open_store(url)
    writer = AuditWriter(store, flush_s=0, batch=batch, max_pending=10 * entries, head_every=0)
    try:
        for i in range(50):  # warm up: connections, statement caches
            record(writer, i)
            await writer.flush()
        per_entry = []
        for i in range(entries):
            started = time.perf_counter()
            record(writer, i)
            await writer.flush()  # what a request would wait for
            per_entry.append(time.perf_counter() - started)

        started = time.perf_counter()
        for i in range(entries):
            record(writer, i)
        hook = (time.perf_counter() - started) / entries
        started = time.perf_counter()
        await writer.flush()
        batched = (time.perf_counter() - started) / entries
    finally:
        await store.dispose()
    per_entry.sort()
    return {
        "sync_median_us": statistics.median(per_entry) * 1e6,
        "sync_p99_us": per_entry[int(len(per_entry) * 0.99)] * 1e6,
        "hook_us": hook * 1e6,
        "batched_per_entry_us": batched * 1e6,
    }


async def run(args: argparse.Namespace) -> None:
    print(
        "| database | sync insert median (us) | sync p99 (us) | hook per request (us) "
        f"| batched, per entry (us, batch {args.batch}) |"
    )
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, str, Callable[[], Awaitable[None]] | None]] = [
            ("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'gateway.db'}", None)
        ]
        if args.postgres:
            tests.support.POSTGRES_URL = args.postgres  # make_database_url's server
            server_url, drop_database = await make_database_url("gateway", Path(tmp))
            targets.append(("PostgreSQL", server_url, drop_database))
        for name, url, drop in targets:
            try:
                result = await measure(url, args.entries, args.batch)
            finally:
                if drop is not None:
                    await drop()
            print(
                f"| {name} | {result['sync_median_us']:.0f} | {result['sync_p99_us']:.0f} | "
                f"{result['hook_us']:.2f} | {result['batched_per_entry_us']:.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (postgresql+asyncpg://user@host:port/postgres)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
