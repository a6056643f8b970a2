"""Leases (shared/db/leases.py): what one renewal costs and how long a takeover takes.

Two `Leases` (two replicas) on one database want the same 20 leases (a relay, a dozen
consumers, the schedules: about what a service has). The first holds them; we time its
renewals (one transaction of two UPDATEs, whatever the number of leases), then stop it
without giving anything up (as SIGKILL leaves it) and time how long the second takes to hold
every lease, from the holder's last renewal (a kill lands up to a renew interval after one),
with the default TTL and renew interval. SQLite by default; `--url` for
PostgreSQL (an empty database: the table is made in it, and dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import MetaData

from shared.db.database import Database
from shared.db.leases import Leases, lease_table
from shared.settings import ServiceSettings

NAMES = ["relay", *(f"consumer:bench-{n}" for n in range(12)), *(f"schedule-{n}" for n in range(7))]


async def run(url: str, renewals: int) -> dict[str, float]:
    metadata = MetaData()
    table = lease_table(metadata)
    db = Database.connect(url, service="bench")
    async with db.writer_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    defaults = ServiceSettings.model_fields
    ttl, renew = defaults["lease_ttl_s"].default, defaults["lease_renew_s"].default
    first = Leases(db, table, ttl_s=ttl, renew_s=renew)
    second = Leases(db, table, ttl_s=ttl, renew_s=renew)
    leases = [first.want(name) for name in NAMES]
    standby = [second.want(name) for name in NAMES]
    try:
        spent = []
        for _ in range(renewals):
            started = time.perf_counter()
            await first.tick()
            spent.append(time.perf_counter() - started)
        assert all(lease.held for lease in leases)
        last_renewal = time.monotonic()  # it dies just after: the worst case is a renew interval less
        second.start()
        await asyncio.sleep(2 * renew)
        assert not any(lease.held for lease in standby)
        first.release_on_stop = False  # killed: nothing given up
        while not all(lease.held for lease in standby):
            await asyncio.sleep(0.01)
        takeover = time.monotonic() - last_renewal
        await second.stop()
        return {
            "ttl": ttl,
            "renew": renew,
            "tick_ms_median": statistics.median(spent) * 1000,
            "tick_ms_p99": sorted(spent)[int(len(spent) * 0.99) - 1] * 1000,
            "takeover_s": takeover,
        }
    finally:
        async with db.writer_engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--renewals", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite+aiosqlite:///{Path(tmp) / 'leases.db'}"
        result = asyncio.run(run(url, args.renewals))
    print(
        f"{len(NAMES)} leases, TTL {result['ttl']} s, renew every {result['renew']} s: "
        f"one renewal {result['tick_ms_median']:.2f} ms median, {result['tick_ms_p99']:.2f} ms p99; "
        f"every lease held by the standby {result['takeover_s']:.2f} s after the holder's last renewal"
    )


if __name__ == "__main__":
    main()
