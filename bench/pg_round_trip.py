"""What one statement's round trip costs on PostgreSQL through SQLAlchemy and asyncpg,
as the services run them: CPU of this process and of its server backend per statement.

A prepared one-row primary-key read, `--statements` times on one pooled connection, inside
one transaction and each in a transaction of its own (BEGIN, the statement, COMMIT: three
round trips), through each layer the services can use: an AsyncSession (the services'
statements), its connection's `exec_driver_sql`, `bulk.fetch_all` (the hot reads: the
statement on the session's asyncpg connection, found once per transaction by
`driver.connections`), and the asyncpg connection itself. With the number of statements the suite runs per purchase
(pg_stat_statements in the latency bench, docs/benchmarks.md) it gives the part of the CPU
per purchase that is the round trips themselves, whatever the statements do.

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

from shared.db.bulk import fetch_all
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


READ_SQL = "SELECT things.id, things.name FROM things WHERE things.id = $1::INTEGER"


async def measure(db: Database, statements: int) -> None:
    async with db.writer() as session, session.begin():
        await session.run_sync(lambda s: metadata.create_all(s.connection()))
        await session.execute(insert_one, [{"id": i, "name": f"thing {i}"} for i in range(1000)])

    async def loop(path: str, each: bool) -> tuple[float, float]:
        """µs of CPU per statement, this process's and its backend's."""

        async with db.writer() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.commit()
            connection = await session.connection()
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None, "an asyncpg connection"
            await session.commit()

            async def one(i: int) -> None:
                if path == "AsyncSession.execute":
                    await session.execute(read_one, {"id": i % 1000})
                elif path == "AsyncConnection.exec_driver_sql":
                    await (await session.connection()).exec_driver_sql(READ_SQL, (i % 1000,))
                elif path == "bulk.fetch_all":
                    await fetch_all(session, read_one, {"id": i % 1000})
                else:
                    await driver.fetch(READ_SQL, i % 1000)

            begin = driver.transaction if path == "asyncpg" else session.begin
            mine, theirs = time.process_time(), backend_cpu(pid)
            if each:
                for i in range(statements):
                    async with begin():
                        await one(i)
            else:
                async with begin():
                    for i in range(statements):
                        await one(i)
            return (time.process_time() - mine) / statements * 1e6, (backend_cpu(pid) - theirs) / statements * 1e6

    print(f"{statements} statements each; µs of CPU per statement, client / server")
    print("| path | in one transaction | a transaction each (BEGIN, statement, COMMIT) |")
    print("|---|---|---|")
    for path in ("AsyncSession.execute", "AsyncConnection.exec_driver_sql", "bulk.fetch_all", "asyncpg"):
        together, each = await loop(path, False), await loop(path, True)
        print(f"| {path} | {together[0]:.0f} / {together[1]:.0f} | {each[0]:.0f} / {each[1]:.0f} |")


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
