"""Bulk import speed: rows/s of an import job (POST /v1/imports until done) into the
identify service, on SQLite and, where PostgreSQL's binaries are installed, on a
throwaway PostgreSQL cluster — with PostgreSQL's own `COPY` of the same rows in the
same run as the baselines: into a plain table, and into a table keyed and indexed
like identify's `transactions`.

The rows are CDNOW_master.txt (69,659 real transactions, 23,570 customers, created by
the import) unless `--rows N` asks for N generated ones. Each import runs against a
fresh database with the real service (its outbox relay publishing to a real
nats-server meanwhile); the time is from the upload to the job's `done`, and, in a
second row, to the moment the relay had published the last of its events.

Run: `.venv/bin/python -m bench.import_bench [--rows N] [--repeat 3] [--no-postgres] [--no-sqlite] [--profile]`.
The import runs in its worker process (services/identify/imports/worker.py); `--profile`
profiles the service's own process (its relay, its requests): to profile the import's
batches too, run it with `VALUECHAIN_IDENTIFY_IMPORT_WORKER=false`.
Target (issue 3): the import at least half as fast as COPY. The floor rows
(bench/import_floor.py) show the most any import that writes what the issue asks can
reach on each database.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import os
import pstats
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import tests.support as support
from bench.import_floor import postgres_floor_once, sqlite_floor_once
from services.identify.imports import worker as import_worker
from tests.support import NatsServer, Suite, free_port, wait_until

CDNOW_MASTER = support.cdnow_dir() / "CDNOW_master.txt"
MAPPING = '{"customer_id": "customer_external_id", "date": "occurred_at", "dollar_value": "amount"}'
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "pgci"  # as in .ci/run: PostgreSQL refuses to run as root


def workload(rows: int | None) -> tuple[bytes, int]:
    """The file to import (CDNOW's layout) and its number of rows."""

    if rows is None:
        data = CDNOW_MASTER.read_bytes()
        return data, data.count(b"\n") - 1
    lines = [" customer_id  date number_of_cds  dollar_value"]
    for i in range(rows):
        lines.append(f" {i % (rows // 3 + 1):05d} 1997{1 + i % 12:02d}{1 + i % 28:02d}  1   {5 + i % 97}.{i % 100:02d}")
    return ("\r\n".join(lines) + "\r\n").encode(), rows


async def import_once(data: bytes, rows: int, profile: bool) -> tuple[float, float]:
    """Seconds from the upload to the job's `done`, and to the last of its events
    published to JetStream, on a fresh database (SQLite, or PostgreSQL when
    tests.support.POSTGRES_URL names a server)."""

    with tempfile.TemporaryDirectory() as tmp:
        nats_server = NatsServer(Path(tmp) / "js")
        nats_server.start()
        try:
            async with AsyncExitStack() as stack:
                suite = Suite(nats_server, Path(tmp), stack)
                identify = await suite.start("identify", log_level="WARNING")
                # The fork server of its import workers, which a service up for a few seconds
                # has started (worker.py): its start-up is not the import's.
                await import_worker.warm()
                profiler = cProfile.Profile() if profile else None
                if profiler:
                    profiler.enable()
                started = time.perf_counter()
                response = await identify.client.post(
                    "/v1/imports",
                    files={"file": ("CDNOW_master.txt", data)},
                    data={"mapping": MAPPING, "currency": "USD", "create_customers": "true"},
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]

                async def done():
                    job = (await identify.client.get(f"/v1/imports/{job_id}")).json()
                    return job if job["status"] != "running" else None

                job = await wait_until(done, timeout=1800, interval=0.05, what="the import")
                elapsed = time.perf_counter() - started
                relay = identify.runtime.relay
                await wait_until(lambda: _drained(relay), timeout=1800, interval=0.05, what="the events published")
                published = time.perf_counter() - started
                if profiler:
                    profiler.disable()
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
                    print(out.getvalue())
                assert job["status"] == "done" and job["recorded"] == rows, job
                return elapsed, published
        finally:
            nats_server.stop()


async def _drained(relay) -> bool:
    return await relay.pending_count() == 0


# --- PostgreSQL ------------------------------------------------------------------------


def _as_pg(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command] if os.getuid() == 0 else command


@contextmanager
def postgres_cluster():
    """A throwaway cluster like .ci/run's (fsync off); yields a URL, or None without binaries."""

    if not (PG_BIN / "initdb").exists():
        yield None
        return
    if os.getuid() == 0:
        subprocess.run(["id", "-u", PG_USER], capture_output=True).returncode == 0 or subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True
        )
    root = Path(tempfile.mkdtemp(prefix="valuechain-bench-pg."))
    root.chmod(0o755)
    (root / "data").mkdir(mode=0o700)
    if os.getuid() == 0:
        shutil.chown(root, PG_USER)
        shutil.chown(root / "data", PG_USER)
    user = PG_USER if os.getuid() == 0 else os.environ.get("USER", "postgres")
    port = free_port()
    try:
        subprocess.run(
            _as_pg(
                [str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        subprocess.run(
            _as_pg(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(root / "data"),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c max_connections=200",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        yield f"postgresql+asyncpg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "fast", "-w"]),
            capture_output=True,
            cwd="/",
        )
        shutil.rmtree(root, ignore_errors=True)


async def _timed_copy(
    admin_url: str, table: str, create: list[str], csv: bytes, rows: int, columns: list[str] | None = None
) -> float:
    """Seconds for `COPY table FROM STDIN` of csv into a table made fresh by `create`."""

    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in create:
            await conn.execute(statement)
        started = time.perf_counter()
        await conn.copy_to_table(table, source=io.BytesIO(csv), format="csv", columns=columns)
        elapsed = time.perf_counter() - started
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == rows
        return elapsed
    finally:
        await conn.close()


async def copy_once(admin_url: str, data: bytes, rows: int) -> float:
    """Seconds for `COPY … FROM STDIN` of the same rows (as CSV) into a plain typed table."""

    csv_rows = "\n".join(",".join(line.split()) for line in data.decode().splitlines()[1:] if line.strip())
    return await _timed_copy(
        admin_url,
        "copy_baseline",
        ["CREATE TABLE copy_baseline (customer_id text, day date, cds int, dollars numeric(18,4))"],
        csv_rows.encode(),
        rows,
    )


def transaction_rows(data: bytes) -> tuple[list[tuple], list[str]]:
    """The transaction rows the import writes for the file (id, customer, amount,
    currency, time, a derived external id of the import's length, recorded_at) and
    the customers they name."""

    from shared.db.ids import uuid7

    rows, customers = [], set()
    for number, line in enumerate(data.decode().splitlines()[1:]):
        if not line.strip():
            continue
        customer, day, _, dollars = line.split()
        customers.add(f"c-{customer}")
        digest = hashlib.sha256(f"{customer}|{day}|{dollars}|{number}".encode()).hexdigest()[:40]
        rows.append(
            (
                uuid7(),
                f"c-{customer}",
                dollars,
                "USD",
                f"{day[:4]}-{day[4:6]}-{day[6:]} 00:00:00+00",
                f"import:{digest}",
                "2026-11-29 00:00:00+00",
            )
        )
    return rows, sorted(customers)


TRANSACTIONS_TABLE = (
    "CREATE TABLE {table} (id varchar(36) PRIMARY KEY, customer_id varchar(36) NOT NULL{references}, "
    "amount numeric(18,4) NOT NULL, currency varchar(3) NOT NULL, occurred_at timestamptz NOT NULL, "
    "external_id varchar(200) UNIQUE, margin numeric(18,4), cost numeric(18,4), recorded_at timestamptz NOT NULL)"
)
TRANSACTIONS_INDEX = "CREATE INDEX ix_{table} ON {table} (customer_id, occurred_at, id)"
TRANSACTION_COLUMNS = ["id", "customer_id", "amount", "currency", "occurred_at", "external_id", "recorded_at"]


async def copy_like_transactions_once(
    admin_url: str, records: list[tuple], customers: list[str], *, foreign_key: bool = False
) -> float:
    """Seconds for `COPY` of the transaction rows the import writes into a table keyed
    and indexed like identify's `transactions`: what PostgreSQL itself needs for the
    import's main table alone, before any customer, summary or event. With
    `foreign_key`, its customer id also references a table of the customers (filled
    before the clock starts), as identify's does. The rows (transaction_rows()) are
    made before the clock starts."""

    table = "copy_transactions_fk" if foreign_key else "copy_transactions"
    create = []
    if foreign_key:
        create += [
            "DROP TABLE IF EXISTS copy_customers",
            "CREATE TABLE copy_customers (id varchar(36) PRIMARY KEY)",
            "INSERT INTO copy_customers VALUES " + ", ".join(f"('{customer}')" for customer in customers),
        ]
    references = " REFERENCES copy_customers (id)" if foreign_key else ""
    create += [TRANSACTIONS_TABLE.format(table=table, references=references), TRANSACTIONS_INDEX.format(table=table)]
    csv = "".join(",".join(record) + "\n" for record in records)
    return await _timed_copy(admin_url, table, create, csv.encode(), len(records), columns=TRANSACTION_COLUMNS)


def sqlite_like_transactions_once(records: list[tuple]) -> float:
    """Seconds for plain `sqlite3` to write the same transaction rows into a table
    keyed and indexed like `transactions`, in transactions of the import's batch size,
    on a file like the service's (WAL, synchronous=NORMAL): SQLite's own floor for
    the import's main table, with no Python work per row. The rows (transaction_rows())
    are made before the clock."""

    import sqlite3

    from services.identify.imports.service import BATCH_ROWS

    with tempfile.TemporaryDirectory() as tmp:
        connection = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(TRANSACTIONS_TABLE.format(table="transactions", references=""))
            connection.execute(TRANSACTIONS_INDEX.format(table="transactions"))
            insert = f"INSERT INTO transactions ({', '.join(TRANSACTION_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            started = time.perf_counter()
            for start in range(0, len(records), BATCH_ROWS):
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(insert, records[start : start + BATCH_ROWS])
                connection.execute("COMMIT")
            elapsed = time.perf_counter() - started
            assert connection.execute("SELECT count(*) FROM transactions").fetchone()[0] == len(records)
            return elapsed
        finally:
            connection.close()


FLOOR = {
    False: "{database}: the import's writes set-based in SQL alone (bench/import_floor.py)",
    True: "{database}: the same with the import's events in the outbox",
}


def _rates(rows: int, seconds: list[float]) -> tuple[float, str]:
    rates = [rows / s for s in seconds]
    return statistics.median(rates), ", ".join(f"{r:,.0f}" for r in rates)


async def run(args) -> None:
    data, rows = workload(args.rows)
    print(f"rows: {rows:,} ({len(data) / 1e6:.1f} MB), repeats: {args.repeat}, cores: {os.cpu_count()}")
    table = []
    records, customers = transaction_rows(data)  # for the keyed baselines and the floors
    if not args.no_sqlite:
        floor = [sqlite_like_transactions_once(records) for _ in range(args.repeat)]
        table.append(("SQLite executemany into a table keyed like `transactions`", *_rates(rows, floor)))
        for outbox in (False, True):
            floor = [sqlite_floor_once(records, outbox=outbox) for _ in range(args.repeat)]
            table.append((FLOOR[outbox].format(database="SQLite"), *_rates(rows, floor)))
        sqlite = [await import_once(data, rows, args.profile) for _ in range(args.repeat)]
        table.append(("import into identify, SQLite", *_rates(rows, [done for done, _ in sqlite])))
        table.append(("… until its last event was published", *_rates(rows, [last for _, last in sqlite])))
    if not args.no_postgres:
        with postgres_cluster() as url:
            if url is None:
                print(f"no PostgreSQL binaries under {PG_BIN}: PostgreSQL rows skipped")
            else:
                support.POSTGRES_URL = url  # the Suite makes each service a fresh database there
                copy = [await copy_once(url, data, rows) for _ in range(args.repeat)]
                table.append(("PostgreSQL COPY into a plain table (baseline)", *_rates(rows, copy)))
                keyed = [await copy_like_transactions_once(url, records, customers) for _ in range(args.repeat)]
                table.append(("PostgreSQL COPY into a table keyed like `transactions`", *_rates(rows, keyed)))
                with_fk = [
                    await copy_like_transactions_once(url, records, customers, foreign_key=True)
                    for _ in range(args.repeat)
                ]
                table.append(
                    ("PostgreSQL COPY into it with `transactions`' foreign key to customers", *_rates(rows, with_fk))
                )
                for outbox in (False, True):
                    floor = [await postgres_floor_once(records, outbox=outbox) for _ in range(args.repeat)]
                    table.append((FLOOR[outbox].format(database="PostgreSQL"), *_rates(rows, floor)))
                pg = [await import_once(data, rows, args.profile) for _ in range(args.repeat)]
                table.append(("import into identify, PostgreSQL", *_rates(rows, [done for done, _ in pg])))
                table.append(("… until its last event was published", *_rates(rows, [last for _, last in pg])))
    print("\n| what | median rows/s | runs |\n|---|---:|---|")
    for name, median, runs in table:
        print(f"| {name} | {median:,.0f} | {runs} |")
    rates = {name: median for name, median, _ in table}
    for baseline in (
        "PostgreSQL COPY into a plain table (baseline)",
        "PostgreSQL COPY into a table keyed like `transactions`",
    ):
        if baseline in rates:
            for name in (
                "import into identify, SQLite",
                "import into identify, PostgreSQL",
                *(
                    FLOOR[outbox].format(database=database)
                    for database in ("SQLite", "PostgreSQL")
                    for outbox in (False, True)
                ),
            ):
                if name in rates:
                    print(f"{name}: {rates[name] / rates[baseline]:.3f}× {baseline} (target ≥ 0.5×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="generated rows instead of CDNOW_master.txt")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each import")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
