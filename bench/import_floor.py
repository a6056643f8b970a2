"""The import's floor: what the database alone needs for the rows an import must
write, done set-based in the fewest statements.

From rows already parsed (ids made, customers named by external id), staged in a
temporary table, one transaction: create the customers not yet known, insert the
transactions that are not duplicates (with their foreign key to the customer),
count them on their customers, fold them into the purchase days and rebuild the
purchase summaries of the customers they touched. There is no Python per row, no
event, no rejection, no discounting and no progress row, so an import that writes
what issue 3 asks cannot be faster than this on the same database. `outbox=True`
adds one outbox row per transaction with a JSON body built by the database.

Used by `bench.import_bench`, which prints these rows beside the import and the
COPY baselines of the same run.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from shared.db.migrations import upgrade
from tests.support import make_database_url

_SUMMARY_COLUMNS = (
    "customer_id, first_purchase_at, last_purchase_at, purchases, purchase_days, total_spend, "
    "first_day_spend, discounted_spend, updated_at"
)
_SUMMARY_UPDATE = (
    "ON CONFLICT (customer_id) DO UPDATE SET last_purchase_at = excluded.last_purchase_at, "
    "purchases = excluded.purchases, purchase_days = excluded.purchase_days, "
    "total_spend = excluded.total_spend"
)
_DAYS_UPDATE = (
    "ON CONFLICT (customer_id, day) DO UPDATE SET purchases = purchase_days.purchases + "
    "excluded.purchases, spend = purchase_days.spend + excluded.spend"
)


_NEW_TRANSACTIONS = (
    "INSERT INTO transactions (id, customer_id, amount, currency, occurred_at, external_id, recorded_at) "
    "SELECT s.id, c.id, s.amount, s.currency, s.occurred_at, s.external_id, {now} "
    "FROM stage s JOIN customers c ON c.external_id = s.customer_external_id"
)


def _statements(
    *, new_id: str, now: str, day: str, json_object: str, body: str, record: list[str], outbox: bool
) -> list[str]:
    """The floor's statements after the staging, in order, in one dialect's words: its
    id function, clock, date cast, JSON object function and JSON-to-body conversion
    (`body`, a format of one `{}`). `record` inserts the transactions that are not
    duplicates and leaves them in a table `inserted`."""

    statements = [
        "INSERT INTO customers (id, external_id, purchase_count, created_at, updated_at) "
        f"SELECT {new_id}, x, 0, {now}, {now} FROM (SELECT DISTINCT customer_external_id AS x FROM stage) s "
        "WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.external_id = s.x)",
        *record,
        "UPDATE customers SET purchase_count = purchase_count + n.n FROM "
        "(SELECT customer_id, count(*) AS n FROM inserted GROUP BY customer_id) n WHERE customers.id = n.customer_id",
        "INSERT INTO purchase_days (customer_id, day, purchases, spend) "
        f"SELECT customer_id, {day}, count(*), sum(amount) FROM inserted GROUP BY customer_id, {day} "
        f"{_DAYS_UPDATE}",
        f"INSERT INTO purchase_summaries ({_SUMMARY_COLUMNS}) "
        f"SELECT customer_id, min(day), max(day), sum(purchases), count(*), sum(spend), 0, 0, {now} "
        "FROM purchase_days WHERE customer_id IN (SELECT customer_id FROM inserted) GROUP BY customer_id "
        f"{_SUMMARY_UPDATE}",
    ]
    if outbox:
        event = body.format(
            f"{json_object}('specversion', '1.0', 'type', 'crm.identify.transaction.recorded', "
            f"'source', 'identify', 'id', {new_id}, 'time', {now}, 'data', "
            f"{json_object}('customer_id', customer_id, 'amount', amount, 'occurred_at', occurred_at))"
        )
        statements.append(
            "INSERT INTO outbox (event_id, subject, body, created_at, attempts) "
            f"SELECT {new_id}, 'crm.identify.transaction.recorded', {event}, {now}, 0 FROM inserted"
        )
    return statements


def _records(transaction_rows: list[tuple]) -> list[tuple]:
    """bench.import_bench's transaction rows as the stage's (id, customer external id,
    amount, currency, occurred_at, external_id)."""

    return [row[:6] for row in transaction_rows]


# --- PostgreSQL --------------------------------------------------------------------


async def postgres_floor_once(transaction_rows: list[tuple], *, outbox: bool = False) -> float:
    """Seconds for the floor on a fresh database of the server tests.support.POSTGRES_URL
    names, with identify's tables (its migrations) made before the clock starts."""

    import asyncpg

    url, drop = await make_database_url("identify", Path(tempfile.gettempdir()))
    try:
        upgrade("identify", url)
        records = [
            (id_, customer, Decimal(amount), currency, datetime.fromisoformat(at), external_id)
            for id_, customer, amount, currency, at, external_id in _records(transaction_rows)
        ]
        statements = _statements(
            new_id="gen_random_uuid()::text",
            now="now()",
            day="(occurred_at AT TIME ZONE 'UTC')::date",
            json_object="json_build_object",
            body="convert_to({}::text, 'UTF8')",
            outbox=outbox,
            record=[
                "CREATE TEMPORARY TABLE inserted ON COMMIT DROP AS WITH new AS ("
                f"{_NEW_TRANSACTIONS.format(now='now()')} ON CONFLICT (external_id) DO NOTHING "
                "RETURNING customer_id, occurred_at, amount) SELECT * FROM new"
            ],
        )
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "CREATE TEMPORARY TABLE stage (id text, customer_external_id text, amount numeric, "
                    "currency text, occurred_at timestamptz, external_id text) ON COMMIT DROP"
                )
                await conn.copy_records_to_table("stage", records=records)
                for statement in statements:
                    await conn.execute(statement)
            elapsed = time.perf_counter() - started
            assert await conn.fetchval("SELECT count(*) FROM transactions") == len(records)
            return elapsed
        finally:
            await conn.close()
    finally:
        await drop()


# --- SQLite -------------------------------------------------------------------------


def sqlite_floor_once(transaction_rows: list[tuple], *, outbox: bool = False) -> float:
    """Seconds for the floor on a fresh SQLite file set up like the service's (WAL,
    synchronous=NORMAL, foreign keys on), with identify's tables (its migrations) made
    before the clock."""

    records = _records(transaction_rows)
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    statements = _statements(
        new_id="lower(hex(randomblob(16)))",
        now=now,
        day="substr(occurred_at, 1, 10)",
        json_object="json_object",
        body="{}",
        outbox=outbox,
        # SQLite has no INSERT in a WITH: insert what is not a duplicate, then read it back.
        record=[
            f"{_NEW_TRANSACTIONS.format(now=now)} "
            "WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.external_id = s.external_id)",
            "CREATE TEMPORARY TABLE inserted AS SELECT t.customer_id, t.occurred_at, t.amount "
            "FROM stage s JOIN transactions t ON t.id = s.id",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "identify.db"
        upgrade("identify", f"sqlite+aiosqlite:///{path}")
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                connection.execute(f"PRAGMA {pragma}")
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "CREATE TEMPORARY TABLE stage (id, customer_external_id, amount, currency, occurred_at, external_id)"
            )
            connection.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?, ?)", records)
            for statement in statements:
                connection.execute(statement)
            connection.execute("COMMIT")
            elapsed = time.perf_counter() - started
            assert connection.execute("SELECT count(*) FROM transactions").fetchone()[0] == len(records)
            return elapsed
        finally:
            connection.close()
