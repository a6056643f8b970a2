"""What one statement's round trip costs on PostgreSQL through SQLAlchemy and asyncpg,
as the services run them: CPU of this process and of its server backend per statement.

Three loops of `--statements` each on one pooled connection, a prepared one-row primary-key
read: inside one transaction; each in a transaction of its own (BEGIN, the statement,
COMMIT: three round trips); and each in a transaction with a one-row insert besides. With
the number of statements the suite runs per purchase (pg_stat_statements in the latency
bench, docs/benchmarks.md) it gives the part of the CPU per purchase that is the round
trips themselves, whatever the statements do.

Run: `VALUECHAIN_TEST_POSTGRES_URL=postgresql+asyncpg://…/postgres
.venv/bin/python -m bench.pg_round_trip [--statements 5000]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, text

from shared.db.database import Database
from tests.support import POSTGRES_URL, make_database_url

HZ = os.sysconf("SC_CLK_TCK")
metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True), Column("name", String(40)))
read_one = select(things.c.id, things.c.name).where(things.c.id == bindparam("id"))
insert_one = insert(things)


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


async def measure(db: Database, statements: int) -> None:
    async with db.writer() as session, session.begin():
        await session.run_sync(lambda s: metadata.create_all(s.connection()))
        await session.execute(insert_one, [{"id": i, "name": f"thing {i}"} for i in range(1000)])

    async def loop(kind: str) -> tuple[float, float]:
        async with db.writer() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.commit()
            mine, theirs = time.process_time(), backend_cpu(pid)
            if kind == "in one transaction":
                async with session.begin():
                    for i in range(statements):
                        await session.execute(read_one, {"id": i % 1000})
            else:
                for i in range(statements):
                    async with session.begin():
                        await session.execute(read_one, {"id": i % 1000})
                        if kind == "a transaction each, with an insert":
                            await session.execute(insert_one, {"id": 1000 + i, "name": "new"})
            return (time.process_time() - mine) / statements * 1e6, (backend_cpu(pid) - theirs) / statements * 1e6

    print(f"{statements} statements each; µs of CPU per statement (this process / its server backend)")
    for kind in ("in one transaction", "a transaction each", "a transaction each, with an insert"):
        client, server = await loop(kind)
        print(f"  {kind:38s} client {client:6.1f}  server {server:6.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=5000)
    args = parser.parse_args()
    if not POSTGRES_URL:
        raise SystemExit("set VALUECHAIN_TEST_POSTGRES_URL to a PostgreSQL server")
    url, drop = await make_database_url("roundtrip", Path("/nonexistent"))
    db = Database.connect(url, service="bench")
    try:
        await measure(db, args.statements)
    finally:
        await db.dispose()
        await drop()


if __name__ == "__main__":
    asyncio.run(main())
