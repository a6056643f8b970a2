"""Many rows of one INSERT go to PostgreSQL as one statement of arrays (shared/db/unnest.py):
which statements have that form, and, on the real database, that rows are stored as an
executemany stores them, in one execution, inside the caller's transaction. Also the
inbox claims, which take their ids as arrays on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import JSON, Column, Integer, LargeBinary, MetaData, Numeric, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError

from shared.db.bulk import bulk_insert, bulk_upsert
from shared.db.database import Database, UTCDateTime, dialect_insert
from shared.db.unnest import Plan, one_statement, plan
from shared.db.uow import transaction
from shared.events.messaging import claim_handled, claim_whole, claimed_whole, messaging_tables, whole_claim
from tests.support import POSTGRES_URL, database_with_tables

TIMELINE = (
    "INSERT INTO timeline (customer_id, event_id, time) VALUES ($1::VARCHAR, $2::VARCHAR, "
    "$3::TIMESTAMP WITH TIME ZONE) ON CONFLICT (customer_id, event_id) DO NOTHING"
)


def test_an_insert_of_cast_placeholders_becomes_one_insert_from_arrays():
    found = plan(TIMELINE)
    assert found == Plan(
        "INSERT INTO timeline (customer_id, event_id, time) SELECT * FROM unnest($1::VARCHAR[], $2::VARCHAR[], "
        "$3::TIMESTAMP WITH TIME ZONE[]) ON CONFLICT (customer_id, event_id) DO NOTHING",
        None,
    )
    assert plan("INSERT INTO t (a, b) VALUES ($1::NUMERIC(12, 2), $2::INTEGER)") == Plan(
        "INSERT INTO t (a, b) SELECT * FROM unnest($1::NUMERIC(12, 2)[], $2::INTEGER[])", None
    )


def test_a_do_update_knows_its_conflict_keys_and_refuses_rows_that_repeat_them():
    found = plan(
        "INSERT INTO p (a, b, c) VALUES ($1::VARCHAR, $2::INTEGER, $3::INTEGER) "
        "ON CONFLICT (c, a) DO UPDATE SET b = excluded.b"
    )
    assert found is not None and found.conflict_keys == (2, 0)
    assert found.fits([("x", 1, 1), ("x", 2, 2), ("y", 3, 1)])
    assert not found.fits([("x", 1, 1), ("y", 2, 2), ("x", 3, 1)])  # (1, "x") twice: one row touched twice
    do_nothing = plan(TIMELINE)
    assert do_nothing is not None and do_nothing.fits([("c", "e", None), ("c", "e", None)])
    upsert = "INSERT INTO p (a, b) VALUES ($1::VARCHAR, $2::INTEGER) ON CONFLICT (a) DO UPDATE SET b = excluded.b"
    assert one_statement(upsert, [("x", 1), ("y", 2)]) == plan(upsert)
    assert one_statement(upsert, [("x", 1), ("x", 2)]) is None  # the key twice: row by row
    assert one_statement(upsert, [("x", 1)]) is None  # one row: the statement as it is


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (a, b) VALUES ($1, $2)",  # no casts: the array types are unknown
        "INSERT INTO t (a, b) VALUES ($1::INTEGER, now())",  # an expression among the values
        "INSERT INTO t (a, b) VALUES ($1::INTEGER, $2::INTEGER[])",  # an array column: unnest would flatten it
        "INSERT INTO t (a, b) VALUES ($2::INTEGER, $1::INTEGER)",  # out of order
        "INSERT INTO t (a, b, c) VALUES ($1::INTEGER, $2::INTEGER)",  # fewer values than columns
        "INSERT INTO t (a, b) VALUES ($1::INTEGER, $2::INTEGER) ON CONFLICT (a) DO UPDATE SET b = $3::INTEGER",
        "INSERT INTO t (a, b) VALUES ($1::INTEGER, $2::INTEGER) ON CONFLICT ON CONSTRAINT k DO UPDATE SET b = 1",
        "INSERT INTO t (a, b) VALUES ($1::INTEGER, $2::INTEGER) RETURNING t.a",
        "UPDATE t SET a=$1::INTEGER WHERE t.b = $2::INTEGER",
    ],
)
def test_statements_without_the_form_keep_their_executemany(sql):
    assert plan(sql) is None


# --- on PostgreSQL ---------------------------------------------------------------------

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", UTCDateTime),
    Column("amount", Numeric(18, 4, asdecimal=True)),
    Column("body", LargeBinary),
    Column("n", Integer, nullable=False),
    Column("doc", JSON),
)
COLUMNS = ("id", "at", "amount", "body", "n", "doc")
on_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL's statements (VALUECHAIN_TEST_POSTGRES_URL)")

# A statement-level trigger counts the statements that wrote to `things`: an executemany of
# three rows is three statements, one insert from arrays is one.
COUNT_STATEMENTS = """
CREATE TABLE statements (n integer NOT NULL);
INSERT INTO statements VALUES (0);
CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN UPDATE statements SET n = n + 1; RETURN NULL; END $$;
CREATE TRIGGER counted AFTER INSERT ON things FOR EACH STATEMENT EXECUTE FUNCTION count_statement();
"""


@pytest.fixture
async def db(tmp_path):
    async with database_with_tables("unnest", tmp_path, metadata) as database:
        async with database.writer_engine.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute(COUNT_STATEMENTS)
        yield database


def _rows(count: int) -> list[tuple]:
    base = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
    return [
        (
            f"id-{i:03d}",
            None if i % 4 == 0 else base + timedelta(hours=i),
            None if i % 3 == 0 else Decimal(f"{i}.{i:02d}"),
            None if i % 5 == 0 else bytes([0, i, 255]),
            i,
            None if i % 2 else {"i": i, "text": 'quotes " and {braces}, \\ too', "list": [1.5, None]},
        )
        for i in range(count)
    ]


async def _statements_and_rows(db: Database) -> tuple[int, list[tuple]]:
    async with db.reader() as session:
        statements = (await session.execute(text("SELECT n FROM statements"))).scalar_one()
        rows = [tuple(row) for row in await session.execute(select(things).order_by(things.c.id))]
    return statements, rows


@on_postgres
@pytest.mark.parametrize("how", ["session.execute", "bulk_insert"])
async def test_many_rows_are_one_statement_and_stored_as_given(db, how):
    rows = _rows(7)
    async with transaction(db.writer) as session:
        if how == "bulk_insert":
            await bulk_insert(session, things, COLUMNS, rows)
        else:
            await session.execute(insert(things), [dict(zip(COLUMNS, row)) for row in rows])
    assert await _statements_and_rows(db) == (1, rows)


@on_postgres
async def test_an_upsert_is_one_statement_unless_its_rows_repeat_a_key(db):
    def add_n(statement):
        return statement.on_conflict_do_update(index_elements=["id"], set_={"n": things.c.n + statement.excluded.n})

    rows = [dict(zip(COLUMNS, row)) for row in _rows(3)]
    async with transaction(db.writer) as session:
        await bulk_upsert(session, things, COLUMNS, rows, add_n)
    assert (await _statements_and_rows(db))[0] == 1
    repeated = [{**rows[1], "n": 10}, {**rows[2], "n": 20}, {**rows[1], "n": 30}]
    async with transaction(db.writer) as session:  # id-001 twice: row by row, as an executemany
        await session.execute(add_n(dialect_insert(things, "postgresql")), repeated)
    statements, stored = await _statements_and_rows(db)
    assert statements == 1 + 3
    assert [row[4] for row in stored] == [0, 1 + 10 + 30, 2 + 20]


@on_postgres
async def test_the_statement_is_part_of_the_transaction_it_opens(db):
    # bulk_insert as a transaction's first statement sends its BEGIN first: the rows go
    # with a rollback, and a clash is SQLAlchemy's IntegrityError.
    with pytest.raises(RuntimeError):
        async with transaction(db.writer) as session:
            await bulk_insert(session, things, COLUMNS, _rows(3))
            raise RuntimeError("the caller fails after the insert")
    assert await _statements_and_rows(db) == (0, [])
    with pytest.raises(IntegrityError):
        async with transaction(db.writer) as session:
            await bulk_insert(session, things, COLUMNS, _rows(3) + _rows(1))
    async with transaction(db.writer) as session:  # the writer is usable afterwards
        await bulk_insert(session, things, COLUMNS, _rows(2))
    assert len((await _statements_and_rows(db))[1]) == 2


async def test_claiming_handled_events_returns_only_the_pairs_not_recorded_before(tmp_path):
    # On PostgreSQL the claim is one INSERT … SELECT FROM unnest of two arrays (any number of
    # pairs, one prepared statement); on SQLite an executemany. Both give the same answer.
    tables = messaging_tables(claims := MetaData())
    async with database_with_tables("claim", tmp_path, claims) as database:
        at = datetime(2026, 12, 6, tzinfo=UTC)
        async with database.writer() as session, session.begin():
            session.info["messaging"] = tables
            first = await claim_handled(session, [("a", "1"), ("a", "2"), ("a", "1"), ("b", "1")], at)
            second = await claim_handled(session, [("a", "2"), ("a", "3"), ("b", "1"), ("c", "1")], at)
        assert first == {("a", "1"), ("a", "2"), ("b", "1")}
        assert second == {("a", "3"), ("c", "1")}
        async with database.reader() as session:
            stored = (await session.execute(select(tables.inbox.c.consumer, tables.inbox.c.handled_at))).all()
        assert len(stored) == 5 and {row.handled_at for row in stored} == {at}


async def test_a_whole_claim_is_one_row_an_event_and_skips_the_specs_that_applied_it_alone(tmp_path):
    # A micro-batch claims each event once for every spec of its durable consumer that takes
    # it. A spec that applied an event on its own before (a failed batch, then spec by spec)
    # has a row of its own: the whole claim leaves that spec out, and a spec-by-spec claim
    # skips an event claimed whole.
    tables = messaging_tables(claims := MetaData())
    async with database_with_tables("claim", tmp_path, claims) as database:
        at = datetime(2026, 12, 7, tzinfo=UTC)
        async with database.writer() as session, session.begin():
            session.info["messaging"] = tables
            assert await claim_handled(session, [("svc-a", "e2")], at) == {("svc-a", "e2")}
            first = await claim_whole(session, "svc-events", {"e1": ["svc-a", "svc-b"], "e2": ["svc-a", "svc-b"]}, at)
            again = await claim_whole(session, "svc-events", {"e1": ["svc-a", "svc-b"], "e3": ["svc-b"]}, at)
            other_durable = await claim_whole(session, "svc-other", {"e1": ["svc-c"]}, at)
            assert await claimed_whole(session, "svc-events", ["e1", "e2", "e4"]) == {"e1", "e2"}
        assert first == {("svc-a", "e1"), ("svc-b", "e1"), ("svc-b", "e2")}
        assert again == {("svc-b", "e3")}
        assert other_durable == {("svc-c", "e1")}
        async with database.reader() as session:
            stored = (await session.execute(select(tables.inbox.c.consumer, tables.inbox.c.event_id))).all()
        assert sorted(stored) == sorted(
            [
                ("svc-a", "e2"),
                (whole_claim("svc-events"), "e1"),
                (whole_claim("svc-events"), "e2"),
                (whole_claim("svc-events"), "e3"),
                (whole_claim("svc-other"), "e1"),
            ]
        )
