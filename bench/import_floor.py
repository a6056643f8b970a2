"""The import's floor: what the database alone needs for the rows an import must
write, done set-based in the fewest statements.

From rows already parsed (ids made, customers named by external id, their ids and
referral codes drawn), staged in temporary tables, one transaction: create the
customers not yet known (with their referral codes, and on SQLite their rows in the
search index), insert the transactions that are not duplicates (every column the
import writes), count them on their customers, fold them into the purchase days and
rebuild the purchase summaries of the customers they touched (their first day's and
discounted spend too). There is no Python per row, no rejection and no progress row,
so an import that writes what issue 3 asks cannot be faster than this on the same
database.

`outbox=True` adds the events: a `customer.created` for each new customer and a
`transaction.recorded` for each transaction (with the customer's running purchase
count), each a CloudEvent with the import's envelope and fields, built by the database
as compact JSON and bundled fifty to an outbox row, as `flush_events` bundles them. So
the floor writes the outbox bytes the import writes (70.0 MB for CDNOW against the
import's 70.3). Until stop 29 it wrote one small body per transaction (a fifth of those
bytes) and no customer event: docs/benchmarks.md, "Stop 29".

Used by `bench.import_bench`, which prints these rows beside the import and the
COPY baselines of the same run.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from services.identify.portfolio.repository import REFERENCE_DAY
from shared.db.migrations import upgrade
from shared.events.contracts import CATALOG
from shared.events.messaging import BUNDLE_EVENTS as BUNDLE
from shared.settings import IdentifySettings
from tests.support import make_database_url

DISCOUNT_RATE = IdentifySettings.model_fields["discount_rate"].default  # the default annual rate
SCHEMAS = "http://127.0.0.1:8000/v1/schemas"
CORRELATION = "00000000-0000-7000-8000-000000000000"  # one per import, as the import's request id


@dataclass(frozen=True)
class Dialect:
    """The words of one database that the floor's statements need."""

    now: str  # the clock
    event_id: str  # a new event id, worked out per row
    quote: str  # a format of one `{}`: the value as JSON text
    joined: str  # a format of `{}` (text) and `{}` (order): the texts of a group, a newline between
    as_body: str  # a format of one `{}`: text as the outbox's body
    day: str  # a transaction's UTC day
    years_back: str  # a format of one `{}` (a day): years from it to REFERENCE_DAY, as a float


SQLITE = Dialect(
    now="strftime('%Y-%m-%d %H:%M:%f', 'now')",
    # a uuid's 36 characters, as the import's ids
    event_id=" || '-' || ".join(f"lower(hex(randomblob({n})))" for n in (4, 2, 2, 2, 6)),
    quote="json_quote({})",
    joined="group_concat({}, char(10))",  # the rows come in order from the subquery
    as_body="CAST({} AS BLOB)",
    day="substr(occurred_at, 1, 10)",
    years_back=f"((julianday('{REFERENCE_DAY}') - julianday({{}})) / 365.0)",
)
POSTGRES = Dialect(
    now="now()",
    event_id="gen_random_uuid()::text",
    quote="to_json({})::text",
    joined="string_agg({}, E'\\n' ORDER BY {})",
    as_body="convert_to({}, 'UTF8')",
    day="(occurred_at AT TIME ZONE 'UTC')::date",
    years_back=f"(('{REFERENCE_DAY}'::date - {{}}) / 365.0)",
)


def _json(d: Dialect, fields: list[tuple[str, str | None]], *, raw: str = "") -> str:
    """SQL for a compact JSON object of `fields` (name, SQL expression; None for null; a
    quoted SQL string for a constant), in their order, as orjson writes the import's events;
    the field named `raw` is JSON already."""

    pieces: list[str] = []  # SQL expressions, the constant text between them merged
    text = ""
    for index, (name, expression) in enumerate(fields):
        text += ("{" if index == 0 else ",") + f'"{name}":'
        if expression is None:
            text += "null"
        elif expression.startswith("'") and name != raw:
            text += json.dumps(expression.strip("'"))
        else:
            pieces += [f"'{text}'", expression if name == raw else d.quote.format(expression)]
            text = ""
    pieces.append(f"'{text}}}'")
    return " || ".join(pieces)


def _events(d: Dialect, event_type: str, rows: str, subject: str, values: dict[str, str]) -> str:
    """INSERT the outbox rows of one event per row of `rows` (a table in the order of its `n`),
    in bundles of BUNDLE, the first event's id naming each. The data holds the contract's
    fields in its order (shared/events/contracts.py): `values` gives the SQL of those the
    import fills, the others are null."""

    fields = list(CATALOG[event_type].model.model_fields)
    assert values.keys() <= set(fields), f"{event_type} has no field {sorted(values.keys() - set(fields))}"
    data: list[tuple[str, str | None]] = [(name, values.get(name)) for name in fields]

    envelope = _json(
        d,
        [
            ("specversion", "'1.0'"),
            ("id", "event_id"),
            ("source", "'/valuechain/identify'"),
            ("type", f"'{event_type}'"),
            ("time", "at"),
            ("subject", subject),
            ("datacontenttype", "'application/json'"),
            ("dataschema", f"'{SCHEMAS}/{event_type}/v1.json'"),
            ("correlationid", f"'{CORRELATION}'"),
            ("data", _json(d, data)),
        ],
        raw="data",
    )
    # The ids and bodies are worked out once per row: a subquery with a window function is
    # not flattened into the query around it (SQLite would otherwise draw the id twice).
    return (
        "INSERT INTO outbox (event_id, subject, body, created_at, attempts) "
        f"SELECT min(first_id), '{event_type}', {d.as_body.format(d.joined.format('body', 'k'))}, {d.now}, 0 FROM ("
        f"SELECT k, event_id || ' ' || {envelope} AS body, (k - 1) / {BUNDLE} AS bundle, "
        f"first_value(event_id) OVER (PARTITION BY (k - 1) / {BUNDLE} ORDER BY k) AS first_id FROM ("
        f"SELECT row_number() OVER (ORDER BY e.n) AS k, {d.event_id} AS event_id, {d.now} AS at, e.* FROM {rows} e"
        ") numbered ORDER BY k) bodies GROUP BY bundle"
    )


# What an imported row fills of each event's data (the rest is null: no email, no margin).
_CUSTOMER_CREATED = {
    "id": "id",
    "external_id": "external_id",
    "referral_code": "referral_code",
    "created_at": "created_at",
}
_TRANSACTION_RECORDED = {
    "id": "id",
    "customer_id": "customer_id",
    "amount": "CAST(amount AS TEXT)",
    "currency": "currency",
    "occurred_at": "occurred_at",
    "external_id": "external_id",
    "purchase_count": "purchase_count",
    "reporting_amount": "CAST(amount AS TEXT)",
    "reporting_currency": "currency",
}
_TRANSACTION_COLUMNS = (
    "id, customer_id, amount, currency, occurred_at, external_id, margin, cost, recorded_at, "
    "reporting_amount, reporting_currency, fx_rate"
)
_SUMMARY_COLUMNS = (
    "customer_id, first_purchase_at, last_purchase_at, purchases, purchase_days, total_spend, "
    "first_day_spend, total_margin, total_cost, discounted_spend, discount_rate, updated_at"
)
_SUMMARY_UPDATE = (
    "ON CONFLICT (customer_id) DO UPDATE SET last_purchase_at = excluded.last_purchase_at, "
    "purchases = excluded.purchases, purchase_days = excluded.purchase_days, "
    "total_spend = excluded.total_spend, discounted_spend = excluded.discounted_spend"
)
_DAYS_UPDATE = (
    "ON CONFLICT (customer_id, day) DO UPDATE SET purchases = purchase_days.purchases + "
    "excluded.purchases, spend = purchase_days.spend + excluded.spend"
)


def _new_transactions(d: Dialect) -> str:
    return (
        f"INSERT INTO transactions ({_TRANSACTION_COLUMNS}) "
        f"SELECT s.id, c.id, s.amount, s.currency, s.occurred_at, s.external_id, NULL, NULL, {d.now}, s.amount, "
        "s.currency, 1 FROM stage s JOIN customers c ON c.external_id = s.customer_external_id"
    )


def _statements(d: Dialect, *, record: list[str], index_customers: list[str], outbox: bool) -> list[str]:
    """The floor's statements after the staging, in order, in one dialect's words. `record`
    inserts the transactions that are not duplicates and leaves them in a table `inserted`
    (n, id, customer_id, amount, currency, occurred_at, external_id, purchase_count: the
    customer's count with this one); `index_customers` adds `new_customers` to the search
    index where the database does not keep it itself."""

    day = d.day
    factor = f"power({1 + DISCOUNT_RATE}, {d.years_back.format('d.day')})"
    statements = [
        "CREATE TEMPORARY TABLE new_customers AS SELECT s.n, s.id, s.external_id, s.referral_code, "
        f"{d.now} AS created_at FROM stage_customers s "
        "WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.external_id = s.external_id)",
        "INSERT INTO customers (id, external_id, referral_code, purchase_count, created_at, updated_at) "
        "SELECT id, external_id, referral_code, 0, created_at, created_at FROM new_customers",
        *index_customers,
        *record,
        "UPDATE customers SET purchase_count = purchase_count + n.n FROM "
        "(SELECT customer_id, count(*) AS n FROM inserted GROUP BY customer_id) n WHERE customers.id = n.customer_id",
        "INSERT INTO purchase_days (customer_id, day, purchases, spend) "
        f"SELECT customer_id, {day}, count(*), sum(amount) FROM inserted GROUP BY customer_id, {day} {_DAYS_UPDATE}",
        f"INSERT INTO purchase_summaries ({_SUMMARY_COLUMNS}) "
        "SELECT d.customer_id, min(d.day), max(d.day), sum(d.purchases), count(*), sum(d.spend), "
        "(SELECT f.spend FROM purchase_days f WHERE f.customer_id = d.customer_id ORDER BY f.day LIMIT 1), NULL, NULL, "
        f"sum(d.spend * {factor}), {DISCOUNT_RATE}, {d.now} "
        "FROM purchase_days d WHERE d.customer_id IN (SELECT customer_id FROM inserted) GROUP BY d.customer_id "
        f"{_SUMMARY_UPDATE}",
    ]
    if outbox:
        statements += [
            _events(d, "crm.identify.customer.created", "new_customers", "id", _CUSTOMER_CREATED),
            _events(d, "crm.identify.transaction.recorded", "inserted", "customer_id", _TRANSACTION_RECORDED),
        ]
    return statements


def _records(transaction_rows: list[tuple]) -> list[tuple]:
    """bench.import_bench's transaction rows as the stage's (n, id, customer external id,
    amount, currency, occurred_at, external_id), n their order in the file."""

    return [(n, *row[:6]) for n, row in enumerate(transaction_rows, start=1)]


def _customers(records: list[tuple]) -> list[tuple]:
    """(n, id, external id, referral code) of each customer the rows name, in the order of
    their first row: ids and codes drawn as the import draws them."""

    from services.identify.customers.referral_codes import distinct_codes
    from shared.db.ids import uuid7_many

    names = list(dict.fromkeys(record[2] for record in records))
    return list(zip(range(1, len(names) + 1), uuid7_many(len(names)), names, distinct_codes(len(names)), strict=True))


# --- PostgreSQL --------------------------------------------------------------------


async def postgres_floor_once(transaction_rows: list[tuple], *, outbox: bool = False) -> float:
    """Seconds for the floor on a fresh database of the server tests.support.POSTGRES_URL
    names, with identify's tables (its migrations) made before the clock starts."""

    import asyncpg

    url, drop = await make_database_url("identify", Path(tempfile.gettempdir()))
    try:
        upgrade("identify", url)
        records = [
            (n, id_, customer, Decimal(amount), currency, datetime.fromisoformat(at), external_id)
            for n, id_, customer, amount, currency, at, external_id in _records(transaction_rows)
        ]
        customers = _customers(records)
        statements = _statements(
            POSTGRES,
            outbox=outbox,
            index_customers=[],  # its GIN index keeps itself
            record=[
                "CREATE TEMPORARY TABLE inserted ON COMMIT DROP AS WITH new AS ("
                f"{_new_transactions(POSTGRES)} ON CONFLICT (external_id) DO NOTHING "
                "RETURNING id, customer_id, amount, currency, occurred_at, external_id) "
                "SELECT s.n, new.*, c.purchase_count + row_number() OVER (PARTITION BY new.customer_id ORDER BY s.n) "
                "AS purchase_count FROM new JOIN stage s ON s.id = new.id JOIN customers c ON c.id = new.customer_id"
            ],
        )
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "CREATE TEMPORARY TABLE stage (n bigint, id text, customer_external_id text, amount numeric, "
                    "currency text, occurred_at timestamptz, external_id text) ON COMMIT DROP"
                )
                await conn.execute(
                    "CREATE TEMPORARY TABLE stage_customers (n bigint, id text, external_id text, referral_code text) "
                    "ON COMMIT DROP"
                )
                await conn.copy_records_to_table("stage", records=records)
                await conn.copy_records_to_table("stage_customers", records=customers)
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


def _sqlite_search_index() -> list[str]:
    """The new customers' rows in SQLite's search index, as every path that creates
    customers adds them (services/identify/customers/repository.py index_new_customers)."""

    from services.identify.customers.repository import SEARCHED

    return [
        "INSERT INTO customer_search_rows (customer_id) SELECT id FROM new_customers ORDER BY n",
        f"INSERT INTO customer_search (rowid, {', '.join(SEARCHED)}) "
        f"SELECT r.id, {', '.join('c.' + column for column in SEARCHED)} FROM customers c "
        "JOIN customer_search_rows r ON r.customer_id = c.id WHERE c.id IN (SELECT id FROM new_customers)",
    ]


def sqlite_floor_once(transaction_rows: list[tuple], *, outbox: bool = False) -> float:
    """Seconds for the floor on a fresh SQLite file set up like the service's (WAL,
    synchronous=NORMAL, foreign keys on), with identify's tables (its migrations) made
    before the clock."""

    records = _records(transaction_rows)
    customers = _customers(records)
    statements = _statements(
        SQLITE,
        outbox=outbox,
        index_customers=_sqlite_search_index(),
        # SQLite has no INSERT in a WITH: insert what is not a duplicate, then read it back.
        record=[
            f"{_new_transactions(SQLITE)} "
            "WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.external_id = s.external_id)",
            "CREATE TEMPORARY TABLE inserted AS SELECT s.n, t.id, t.customer_id, t.amount, t.currency, "
            "t.occurred_at, t.external_id, "
            "c.purchase_count + row_number() OVER (PARTITION BY t.customer_id ORDER BY s.n) AS purchase_count "
            "FROM stage s JOIN transactions t ON t.id = s.id JOIN customers c ON c.id = t.customer_id",
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
                "CREATE TEMPORARY TABLE stage (n, id, customer_external_id, amount, currency, occurred_at, external_id)"
            )
            connection.execute("CREATE TEMPORARY TABLE stage_customers (n, id, external_id, referral_code)")
            connection.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?, ?, ?)", records)
            connection.executemany("INSERT INTO stage_customers VALUES (?, ?, ?, ?)", customers)
            for statement in statements:
                connection.execute(statement)
            connection.execute("COMMIT")
            elapsed = time.perf_counter() - started
            assert connection.execute("SELECT count(*) FROM transactions").fetchone()[0] == len(records)
            return elapsed
        finally:
            connection.close()
