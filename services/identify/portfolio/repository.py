"""Portfolio queries: customer arrays for the models, scores, kinds, model versions, refits.

Bulk reads use dialect-specific day arithmetic (SQLite `julianday`, PostgreSQL date
subtraction) so a million rows arrive as plain numbers, without a datetime object each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, cast

import numpy as np
import orjson
from sqlalchemy import (
    ColumnClause,
    CursorResult,
    Date,
    String,
    Table,
    bindparam,
    case,
    delete,
    func,
    inspect,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, DropIndex

from services.identify.models import (
    CustomerCosts,
    CustomerKind,
    CustomerScore,
    HelpfulMarksSeen,
    PortfolioModel,
    PortfolioView,
    PurchaseDay,
    PurchaseSummary,
    ReferralSeen,
    Refit,
    ServiceCostSeen,
    ShippedIdeaSeen,
    Transaction,
)
from shared.db.bulk import bulk_upsert, key_chunks, one_of
from shared.db.database import dialect_name, utcnow
from shared.db.leases import live

EPOCH = date(1970, 1, 1)
# The day discounted spend is compounded to (see PurchaseSummary.discounted_spend).
REFERENCE_DAY = date(2000, 1, 1)


def day_number(value: date) -> int:
    return (value - EPOCH).days


REFERENCE_DAY_NUMBER = day_number(REFERENCE_DAY)


def _day(column: str, dialect: str, *, timestamp: bool) -> str:
    if dialect == "sqlite":
        return f"CAST(julianday({column}) - 2440587.5 AS INTEGER)"
    if timestamp:
        return f"(({column} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"
    return f"({column} - DATE '1970-01-01')"


@dataclass
class CustomerArrays:
    """One entry per (unmerged) customer with purchases, in customer id order."""

    ids: list[str]
    first_day: np.ndarray
    last_day: np.ndarray
    purchases: np.ndarray
    purchase_days: np.ndarray
    total_spend: np.ndarray
    first_day_spend: np.ndarray
    total_margin: np.ndarray  # NaN where no transaction carried a margin
    total_cost: np.ndarray
    customer_costs: np.ndarray  # acquisition + selling + service
    compounded_spend: np.ndarray  # Σ spend · (1 + rate)^(years from purchase to the reference or as_of day)
    referrals: np.ndarray
    kinds_held: np.ndarray  # rows in customer_kinds now (read only for a few customers)
    # lifecycle's service costs (tickets), one entry per cost: its customer's index, amount and day.
    service_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    service_amount: np.ndarray = field(default_factory=lambda: np.zeros(0))
    service_day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # What the customers each one referred spent in all (reporting currency); empty: none known.
    referred_revenue: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.ids)

    def service_costs_at(self, as_of_day: int, annual_rate: float) -> np.ndarray:
        """Each customer's service costs, each compounded from its day to `as_of_day` as spend is
        (a cost recorded after the as-of day is discounted back to it)."""

        if not len(self.service_index):
            return np.zeros(len(self.ids))
        with np.errstate(over="ignore", invalid="ignore"):
            factor = np.power(1.0 + annual_rate, (as_of_day - self.service_day) / 365.0)
        return np.bincount(self.service_index, weights=self.service_amount * factor, minlength=len(self.ids))

    def compound_to(self, as_of_day: int, annual_rate: float) -> None:
        """Carry the spend compounded to the reference day on to `as_of_day` (once).

        In numpy, not Python floats: a purchase dated 9999-12-31 (stored before dates were
        bounded) made a Python `1.1 ** 8000` raise OverflowError in every re-score; numpy
        gives inf, which scoring writes as null. Dates from 1970 to tomorrow stay finite.
        """

        with np.errstate(over="ignore", invalid="ignore"):
            factor = np.power(1.0 + annual_rate, (as_of_day - REFERENCE_DAY_NUMBER) / 365.0, dtype=np.float64)
            self.compounded_spend = self.compounded_spend * factor


# The customers each referrer referred (once each: a merge may have joined two referrals of one
# person) with their purchase summaries: referred revenue, evidence for benchmark customers.
_REFERRED = """(SELECT DISTINCT referrer_id, referred_id FROM referrals_seen) r
            JOIN purchase_summaries p ON p.customer_id = r.referred_id"""


def _summary_sql(dialect: str, *, only_ids: bool) -> str:
    if only_ids:  # a few customers: indexed lookups, including the kinds they hold now
        referrals = "(SELECT COUNT(*) FROM referrals_seen r WHERE r.referrer_id = s.customer_id)"
        held = "(SELECT COUNT(*) FROM customer_kinds k WHERE k.customer_id = s.customer_id)"
        revenue = f"""(SELECT COALESCE(SUM(CAST(p.total_spend AS FLOAT)), 0) FROM {_REFERRED}
            WHERE r.referrer_id = s.customer_id)"""
        joins, where = "", "WHERE s.customer_id IN :ids"
    else:  # everyone: one pass, referrals counted once
        referrals, held, revenue = "COALESCE(r.referrals, 0)", "0", "COALESCE(rr.revenue, 0)"
        joins = f"""LEFT JOIN (
            SELECT referrer_id, COUNT(*) AS referrals FROM referrals_seen GROUP BY referrer_id
        ) r ON r.referrer_id = s.customer_id
        LEFT JOIN (
            SELECT r.referrer_id, SUM(CAST(p.total_spend AS FLOAT)) AS revenue FROM {_REFERRED}
            GROUP BY r.referrer_id
        ) rr ON rr.referrer_id = s.customer_id"""
        where = ""
    return f"""
        SELECT s.customer_id,
               {_day("s.first_purchase_at", dialect, timestamp=True)},
               {_day("s.last_purchase_at", dialect, timestamp=True)},
               s.purchases, s.purchase_days,
               CAST(s.total_spend AS FLOAT), CAST(s.first_day_spend AS FLOAT),
               CAST(s.total_margin AS FLOAT), COALESCE(CAST(s.total_cost AS FLOAT), 0),
               COALESCE(CAST(c.acquisition + c.selling + c.service AS FLOAT), 0),
               s.discounted_spend, {referrals}, {held}, {revenue}
        FROM purchase_summaries s  -- a merged customer has none: its purchases moved to the survivor
        LEFT JOIN customer_costs c ON c.customer_id = s.customer_id
        {joins}
        {where}
        ORDER BY s.customer_id
    """


@cache
def _customers_statement(dialect: str):
    return text(_summary_sql(dialect, only_ids=True)).bindparams(bindparam("ids", expanding=True))


def _arrays(rows: Sequence[tuple[Any, ...]]) -> CustomerArrays:
    if not rows:
        empty = np.zeros(0)
        return CustomerArrays([], *([empty] * 12))
    ids = [row[0] for row in rows]
    matrix = np.array([tuple(row)[1:] for row in rows], dtype=float)  # None → nan (margin)
    columns = [matrix[:, i] for i in range(matrix.shape[1])]
    arrays = CustomerArrays(ids, *columns[:12])
    arrays.referred_revenue = columns[12]
    return arrays


@asynccontextmanager
async def bulk_reader(url: str) -> AsyncIterator[AsyncSession]:
    """A session on a connection of its own for reads of the whole portfolio. On SQLite
    the service's reader runs inline on the event loop, which a million-row read would
    stall for seconds; this one runs on aiosqlite's worker thread."""

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection, AsyncSession(bind=connection) as session:
            yield session
    finally:
        await engine.dispose()


async def fetch_all(session: AsyncSession, sql: str, params: dict) -> list[tuple]:
    """All rows of a bulk query as plain tuples, straight from the driver.

    SQLAlchemy's Row objects cost about a microsecond each to make and more to turn
    into numbers; a refit reads a million. Named `:params` only, no expanding lists.
    """

    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None, "a checked-out connection has its driver's"
    if dialect_name(session) == "sqlite":
        cursor = await raw.execute(sql, params)
        try:
            return await cursor.fetchall()
        finally:
            await cursor.close()
    names = list(params)
    for number, name in enumerate(names, start=1):
        sql = sql.replace(f":{name}", f"${number}")
    return await raw.fetch(sql, *(params[name] for name in names))


async def load_customers(session: AsyncSession, *, customer_ids: list[str] | None = None) -> CustomerArrays:
    """Summaries of every unmerged customer with purchases (or of `customer_ids`), their
    spend compounded to the reference day (see `CustomerArrays.compound_to`)."""

    dialect = dialect_name(session)
    rows: Sequence[tuple[Any, ...]]
    costs: Sequence[tuple[Any, ...]]
    if customer_ids is None:
        rows = await fetch_all(session, _summary_sql(dialect, only_ids=False), {})
        costs = await fetch_all(session, _service_costs_sql(dialect), {})
    else:
        rows = (await session.execute(_customers_statement(dialect), {"ids": list(customer_ids)})).all()
        costs = (await session.execute(_service_costs_statement(dialect), {"ids": list(customer_ids)})).all()
    arrays = _arrays(rows)
    index = {customer_id: number for number, customer_id in enumerate(arrays.ids)}
    kept = [(index[row[0]], row[1], row[2]) for row in costs if row[0] in index]
    if kept:
        matrix = np.array(kept, dtype=float)
        arrays.service_index = matrix[:, 0].astype(np.int64)
        arrays.service_amount, arrays.service_day = matrix[:, 1], matrix[:, 2]
    return arrays


def _service_costs_sql(dialect: str, where: str = "") -> str:
    day = _day("recorded_at", dialect, timestamp=True)
    return f"SELECT customer_id, CAST(amount AS FLOAT), {day} FROM service_costs_seen {where}"


@cache
def _service_costs_statement(dialect: str):
    sql = _service_costs_sql(dialect, "WHERE customer_id IN :ids")
    return text(sql).bindparams(bindparam("ids", expanding=True))


async def stale_discounts(session: AsyncSession, annual_rate: float) -> list[str]:
    """Customers whose discounted_spend was summed at another rate (or before it existed)."""

    summaries = PurchaseSummary.__table__
    query = select(summaries.c.customer_id).where(
        summaries.c.discount_rate.is_(None) | (summaries.c.discount_rate != annual_rate)
    )
    return list((await session.execute(query)).scalars())


async def load_calibration(session: AsyncSession, *, end_day: int) -> dict[str, np.ndarray]:
    """Per-customer first/last purchase day, purchase days, total and first-day spend,
    counting only purchase days up to `end_day` (the calibration period)."""

    dialect = dialect_name(session)
    sql = f"""
        WITH agg AS (
            SELECT p.customer_id, MIN(p.day) AS first_day, MAX(p.day) AS last_day,
                   COUNT(*) AS days, SUM(CAST(p.spend AS FLOAT)) AS total
            FROM purchase_days p JOIN customers cu ON cu.id = p.customer_id AND cu.merged_into IS NULL
            WHERE {_day("p.day", dialect, timestamp=False)} <= :end_day
            GROUP BY p.customer_id
        )
        SELECT {_day("agg.first_day", dialect, timestamp=False)}, {_day("agg.last_day", dialect, timestamp=False)},
               agg.days, agg.total, CAST(f.spend AS FLOAT)
        FROM agg JOIN purchase_days f ON f.customer_id = agg.customer_id AND f.day = agg.first_day
    """
    rows = await fetch_all(session, sql, {"end_day": end_day})
    matrix = np.array(rows, dtype=float).reshape(-1, 5)
    keys = ("first_day", "last_day", "purchase_days", "total_spend", "first_day_spend")
    return {key: matrix[:, i] for i, key in enumerate(keys)}


# --- model versions and refits ---------------------------------------------------


async def latest_model(session: AsyncSession) -> PortfolioModel | None:
    query = select(PortfolioModel).order_by(PortfolioModel.version.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def latest_model_version(session: AsyncSession) -> int | None:
    return (await session.execute(select(func.max(PortfolioModel.version)))).scalar()


async def get_refit(session: AsyncSession, refit_id: str) -> Refit | None:
    return await session.get(Refit, refit_id)


async def list_refits(session: AsyncSession, *, before_id: str | None, limit: int) -> list[Refit]:
    query = select(Refit).order_by(Refit.id.desc()).limit(limit)
    if before_id:
        query = query.where(Refit.id < before_id)
    return list((await session.execute(query)).scalars())


async def queued_refit(session: AsyncSession) -> Refit | None:
    """The refit waiting to run, if any (there is one at most: uq_portfolio_refits_queued)."""

    return (await session.execute(select(Refit).where(Refit.status == "queued"))).scalar_one_or_none()


async def fail_interrupted_refits(session: AsyncSession, *, leases: Table, prefix: str, grace_s: float) -> int:
    """Fail the refits queued or running whose lease (`<prefix><id>`) nobody has held for `grace_s`."""

    now = utcnow()
    # An UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed Result.
    result = cast(
        "CursorResult[*tuple[Any, ...]]",
        await session.execute(
            update(Refit)
            .where(
                Refit.status.in_(("queued", "running")), ~live(leases, literal(prefix, String) + Refit.id, now, grace_s)
            )
            .values(
                status="failed",
                failure="interrupted: the identify replica running it stopped; request a new refit",
                finished_at=now,
            )
        ),
    )
    return result.rowcount or 0


# --- scores and kinds -------------------------------------------------------------

SCORE_COLUMNS = (
    "customer_id",
    "model_version",
    "recency",
    "frequency",
    "monetary",
    "segment",
    "historic_clv",
    "predicted_clv",
    "expected_purchases",
    "probability_alive",
    "expected_spend",
    "kinds",
    "evidence",
    "scored_at",
)


@cache
def _write_scores_sql(dialect: str) -> str:
    if dialect == "sqlite":
        placeholders = ["?"] * len(SCORE_COLUMNS)
    else:
        placeholders = [f"${n}" for n in range(1, len(SCORE_COLUMNS) + 1)]
    if dialect != "sqlite":  # JSON goes over the wire as text
        placeholders[SCORE_COLUMNS.index("kinds")] += "::text::json"
        placeholders[SCORE_COLUMNS.index("evidence")] += "::text::json"
    updates = ", ".join(f"{column} = excluded.{column}" for column in SCORE_COLUMNS[1:])
    return (
        f"INSERT INTO customer_scores ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join(placeholders)}) "
        f"ON CONFLICT (customer_id) DO UPDATE SET {updates}"
    )


def _json_text(value) -> str:
    return orjson.dumps(value).decode()


def kinds_text(kinds: list[str]) -> str:
    """A kinds list as customer_scores.kinds holds it (what previous_scores reads back)."""

    return "[]" if not kinds else _json_text(kinds)


async def write_scores(session: AsyncSession, columns: dict[str, list], *, at) -> None:
    """Upsert customers' scores (columns as lists, see scoring.score_columns): one
    driver-level executemany of plain tuples, for one customer or a refit's chunk (the
    ORM's per-row work would cost more than the whole fit)."""

    dialect = dialect_name(session)
    kinds = [kinds_text(value) for value in columns["kinds"]]
    evidence = ["{}" if not value else _json_text(value) for value in columns["evidence"]]
    # SQLite stores datetimes as text in SQLAlchemy's format; asyncpg takes datetimes.
    scored_at = at.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else at
    values = [columns[name] for name in SCORE_COLUMNS[:-3]]
    rows = list(zip(*values, kinds, evidence, [scored_at] * len(kinds)))
    connection = await session.connection()
    await connection.exec_driver_sql(_write_scores_sql(dialect), rows)


# The indexes lists sorted by CLV walk (models.CustomerScore). Kept row by row through a
# refit's rewrite of a million scores they made that write 36 s instead of 3.3 s on
# SQLite (random updates of two 1M-entry B-trees: each chunk's commit rewrote most of
# their pages) and 28-29 s instead of 13-16 s on PostgreSQL; dropped first and built
# again after, one sorted pass each, they cost ~1.7 s (SQLite) and ~2.5 s (PostgreSQL).
RANK_INDEXES = tuple(
    index
    for index in CustomerScore.__table__.indexes
    if index.name in ("ix_customer_scores_clv", "ix_customer_scores_segment_clv")
)


async def drop_rank_indexes(session: AsyncSession) -> None:
    if dialect_name(session) == "postgresql":
        # DROP INDEX waits for an exclusive lock on the scores, and every later reader
        # queues behind it: behind a long reader (an export), give up and keep them.
        await session.execute(text("SET LOCAL lock_timeout = '2s'"))
    for index in RANK_INDEXES:
        await session.execute(DropIndex(index, if_exists=True))


async def ensure_rank_indexes(session: AsyncSession, indexes=RANK_INDEXES) -> None:
    """Build these RANK_INDEXES where missing: after a refit's write, whether it
    succeeded or not, and at start-up (a process killed mid-refit left them dropped).

    Those present get no statement: any DDL through SQLAlchemy's asyncpg dialect makes every
    pooled connection drop the statements it prepared, at its next statement. At every
    start-up that cleared the purchase path's prepared statements for nothing."""

    present = await session.run_sync(
        lambda sync: {found["name"] for found in inspect(sync.connection()).get_indexes(CustomerScore.__tablename__)}
    )
    for index in indexes:
        if index.name not in present:
            await session.execute(CreateIndex(index, if_not_exists=True))


_PREVIOUS_SQL = "SELECT customer_id, segment, CAST(kinds AS TEXT), predicted_clv FROM customer_scores WHERE "
_PREVIOUS_BY_ID = text(_PREVIOUS_SQL + "customer_id IN :ids").bindparams(bindparam("ids", expanding=True))


async def previous_scores(session: AsyncSession, customer_ids: list[str]) -> list[tuple]:
    """(customer_id, segment, kinds as JSON text, predicted_clv) of these customers'
    current scores (none for a customer never scored), to tell what a re-score changed."""

    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(customer_ids), 1000):
        rows += (await session.execute(_PREVIOUS_BY_ID, {"ids": customer_ids[start : start + 1000]})).all()
    return [tuple(row) for row in rows]


async def previous_scores_between(session: AsyncSession, first_id: str, last_id: str) -> list[tuple]:
    """previous_scores() of a refit's chunk, whose ids are one range in the database's
    order (load_customers sorts by id): one indexed range read straight from the driver."""

    sql = _PREVIOUS_SQL + "customer_id >= :first AND customer_id <= :last ORDER BY customer_id"
    return await fetch_all(session, sql, {"first": first_id, "last": last_id})


async def replace_kinds(session: AsyncSession, rows: list[dict], *, customer_ids: list[str] | None) -> None:
    """Swap the kinds of `customer_ids` (of everyone when None) for `rows`."""

    table = CustomerKind.__table__
    if customer_ids is None:
        await session.execute(delete(table))
    else:
        for start in range(0, len(customer_ids), 500):
            await session.execute(delete(table).where(table.c.customer_id.in_(customer_ids[start : start + 500])))
    if rows:
        await session.execute(table.insert(), rows)


async def referrers_of(session: AsyncSession, referred_ids: list[str]) -> set[str]:
    """The customers who referred any of these."""

    table = ReferralSeen.__table__
    found: set[str] = set()
    for start in range(0, len(referred_ids), 1000):
        query = select(table.c.referrer_id).where(table.c.referred_id.in_(referred_ids[start : start + 1000]))
        found.update((await session.execute(query)).scalars())
    return found


async def referred_by(session: AsyncSession, referrer_ids: list[str], limit: int = 10) -> dict[str, list[str]]:
    table = ReferralSeen.__table__
    query = (
        select(table.c.referrer_id, table.c.referred_id)
        .where(table.c.referrer_id.in_(referrer_ids))
        .order_by(table.c.recorded_at)
    )
    rows = (await session.execute(query)).all()
    found: dict[str, list[str]] = {}
    for referrer, referred in rows:
        bucket = found.setdefault(referrer, [])
        if len(bucket) < limit:
            bucket.append(referred)
    return found


async def shipped_ideas(session: AsyncSession, customer_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Each customer's shipped ideas (of `customer_ids`, or everyone's), oldest first.

    The table holds one row per shipped idea: a refit reads it whole."""

    table = ShippedIdeaSeen.__table__
    query = select(table.c.customer_id, table.c.idea_id).order_by(table.c.shipped_at, table.c.idea_id)
    if customer_ids is not None:
        query = query.where(table.c.customer_id.in_(customer_ids))
    found: dict[str, list[str]] = {}
    for customer_id, idea_id in (await session.execute(query)).all():
        found.setdefault(customer_id, []).append(idea_id)
    return found


async def helpful_marks_at_least(
    session: AsyncSession, minimum: int, customer_ids: list[str] | None = None
) -> dict[str, int]:
    """{customer: helpful marks} of the customers (of `customer_ids`, or everyone) with at
    least `minimum`: the few whom helpful marks make benchmark customers."""

    table = HelpfulMarksSeen.__table__
    query = select(table.c.customer_id, table.c.helpful_marks).where(table.c.helpful_marks >= minimum)
    if customer_ids is not None:
        query = query.where(table.c.customer_id.in_(customer_ids))
    return {customer_id: int(marks) for customer_id, marks in (await session.execute(query)).all()}


async def record_helpful_marks(session: AsyncSession, rows: list[dict[str, Any]]) -> list[str]:
    """Keep each customer's newest announced total; the customers whose total changed."""

    table = HelpfulMarksSeen.__table__
    ids = [row["customer_id"] for row in rows]
    known = {
        customer_id: (marks, at)
        for customer_id, marks, at in (
            await session.execute(
                select(table.c.customer_id, table.c.helpful_marks, table.c.changed_at).where(
                    table.c.customer_id.in_(ids)
                )
            )
        ).all()
    }
    changed = []
    for row in rows:
        current = known.get(row["customer_id"])
        if current is None:
            await session.execute(table.insert().values(**row))
        elif row["changed_at"] >= current[1]:
            if row["helpful_marks"] == current[0]:
                continue
            await session.execute(
                update(table)
                .where(table.c.customer_id == row["customer_id"])
                .values(helpful_marks=row["helpful_marks"], changed_at=row["changed_at"])
            )
        else:
            continue  # an older total, read late
        changed.append(row["customer_id"])
    return changed


# --- portfolio views -------------------------------------------------------------


async def segment_totals(session: AsyncSession) -> Sequence[tuple[Any, ...]]:
    # SQLite, without statistics, read the scores through (segment, CLV) to skip the GROUP
    # BY's sort: a table lookup per customer, 6.3 s for a million; one pass and a sort, 0.64 s.
    scores = "customer_scores sc NOT INDEXED" if dialect_name(session) == "sqlite" else "customer_scores sc"
    return (
        await session.execute(
            text(f"""
        SELECT sc.segment, COUNT(*), COALESCE(SUM(CAST(s.total_spend AS FLOAT)), 0),
               COALESCE(SUM(sc.historic_clv), 0), COALESCE(SUM(sc.predicted_clv), 0)
        FROM {scores}
        JOIN purchase_summaries s ON s.customer_id = sc.customer_id
        GROUP BY sc.segment
    """)
        )
    ).all()


async def revenue_and_net(session: AsyncSession) -> np.ndarray:
    """Per unmerged customer: revenue, margin (NaN when none given), serving cost, customer costs."""

    rows = await fetch_all(
        session,
        """
        SELECT CAST(s.total_spend AS FLOAT), CAST(s.total_margin AS FLOAT), COALESCE(CAST(s.total_cost AS FLOAT), 0),
               COALESCE(CAST(c.acquisition + c.selling + c.service AS FLOAT), 0)
        FROM purchase_summaries s  -- a merged customer has none: its purchases moved to the survivor
        LEFT JOIN customer_costs c ON c.customer_id = s.customer_id
    """,
        {},
    )
    return np.array(rows, dtype=float).reshape(-1, 4)


async def kind_counts(session: AsyncSession) -> Sequence[tuple[Any, ...]]:
    """(kind, customers holding it) of the kinds someone holds."""

    table = CustomerKind.__table__
    return (await session.execute(select(table.c.kind, func.count()).group_by(table.c.kind))).all()


async def stored_view(session: AsyncSession, name: str) -> PortfolioView | None:
    """The view `name` the latest refit stored; None when it stored none (a model fitted
    before views were stored keeps none until the next refit)."""

    latest = select(func.max(PortfolioModel.version)).scalar_subquery()
    query = select(PortfolioView).where(PortfolioView.name == name, PortfolioView.model_version == latest)
    return (await session.execute(query)).scalar_one_or_none()


async def store_views(session: AsyncSession, views: dict[str, dict], *, model_version: int, at) -> None:
    """Replace the stored views with these, computed by the refit of `model_version` at `at`."""

    table = PortfolioView.__table__
    await session.execute(delete(table))
    rows = [
        {"name": name, "model_version": model_version, "body": body, "computed_at": at} for name, body in views.items()
    ]
    await session.execute(table.insert(), rows)


async def list_kinds(session: AsyncSession, *, kind: str | None, after: tuple[str, float, str] | None, limit: int):
    """Customers holding a kind, strongest evidence first (rank_value descending)."""

    return (await session.execute(kinds_query(kind=kind, after=after, limit=limit))).mappings().all()


def kinds_query(*, kind: str | None, after: tuple[str, float, str] | None, limit: int):
    """list_kinds' statement: in the order of ix_customer_kinds_kind_rank, which it walks."""

    table = CustomerKind.__table__
    query = select(table).order_by(table.c.kind, table.c.rank_value.desc(), table.c.customer_id).limit(limit)
    if kind:
        query = query.where(table.c.kind == kind)
    if after:
        after_kind, after_rank, after_id = after
        query = query.where(
            (table.c.kind > after_kind)
            | ((table.c.kind == after_kind) & (table.c.rank_value < after_rank))
            | ((table.c.kind == after_kind) & (table.c.rank_value == after_rank) & (table.c.customer_id > after_id))
        )
    return query


async def get_costs(session: AsyncSession, customer_id: str) -> CustomerCosts | None:
    return await session.get(CustomerCosts, customer_id)


async def service_costs_of(session: AsyncSession, customer_id: str) -> Decimal:
    """The sum of what serving the customer on lifecycle's tickets cost."""

    total = await session.scalar(
        select(func.sum(ServiceCostSeen.amount)).where(ServiceCostSeen.customer_id == customer_id)
    )
    return Decimal(total) if total is not None else Decimal(0)


# --- the summaries' inputs (summaries.py) --------------------------------------------

_transactions = Transaction.__table__
_days = PurchaseDay.__table__
_summaries = PurchaseSummary.__table__


async def transactions_for_summaries(session: AsyncSession, customer_ids) -> list[dict]:
    """The fields the summaries need, of every recorded (not voided) transaction of these customers."""

    rows: list[dict] = []
    dialect = dialect_name(session)
    for chunk in key_chunks(customer_ids, dialect):
        result = await session.execute(_summary_inputs(dialect), {"ids": chunk})
        rows.extend(dict(row) for row in result.mappings())
    return rows


@cache
def _summary_inputs(dialect: str):
    names = (
        "customer_id",
        "occurred_at",
        "amount",
        "margin",
        "cost",
        "reporting_amount",
        "fx_rate",
        "refunded_amount",
        "refunded_reporting_amount",
    )
    columns = [_transactions.c[name] for name in names]
    # A voided transaction was recorded in error: it is in no count and no sum.
    return select(*columns).where(one_of(_transactions.c.customer_id, dialect), _transactions.c.status != "voided")


# --- purchase days and summaries (summaries.py) --------------------------------------


def _add_nullable(column, incoming):
    """Sum of two optional amounts: NULL only while neither side has one."""

    return case(
        (incoming.is_(None), column),
        (column.is_(None), incoming),
        else_=column + incoming,
    )


def _on_day_conflict(statement):
    return statement.on_conflict_do_update(
        index_elements=["customer_id", "day"],
        set_={
            "purchases": _days.c.purchases + statement.excluded.purchases,
            "spend": _days.c.spend + statement.excluded.spend,
        },
    )


_DAY_COLUMNS = ("customer_id", "day", "purchases", "spend")


async def add_purchase_days(session: AsyncSession, rows: list[dict]) -> None:
    """Merge (customer_id, day, purchases, spend) rows into purchase_days."""

    await bulk_upsert(session, _days, _DAY_COLUMNS, rows, _on_day_conflict)


_SUMMARY_COLUMNS = (
    "customer_id",
    "first_purchase_at",
    "last_purchase_at",
    "purchases",
    "purchase_days",
    "first_day_spend",
    "total_spend",
    "total_margin",
    "total_cost",
    "discounted_spend",
    "discount_rate",
    "updated_at",
)


async def add_to_summaries(session: AsyncSession, rows: list[dict]) -> None:
    """Merge one row per customer (first/last purchase, purchases, spend, margin, cost of
    the new transactions; purchase days and first day's spend as if the summary were
    new) into purchase_summaries. Call after add_purchase_days: an existing summary
    reads those two from the customer's purchase days (through their primary key)."""

    await bulk_upsert(session, _summaries, _SUMMARY_COLUMNS, rows, _on_summary_conflict)


_other_day = _days.alias("d")
_EXCLUDED_CUSTOMER: ColumnClause[str] = literal_column("excluded.customer_id")


def _summed(new) -> dict[str, Any]:
    """An existing summary's columns that add up or move with the new transactions'."""

    return {
        "first_purchase_at": case(
            (new.first_purchase_at < _summaries.c.first_purchase_at, new.first_purchase_at),
            else_=_summaries.c.first_purchase_at,
        ),
        "last_purchase_at": case(
            (new.last_purchase_at > _summaries.c.last_purchase_at, new.last_purchase_at),
            else_=_summaries.c.last_purchase_at,
        ),
        "purchases": _summaries.c.purchases + new.purchases,
        "total_spend": _summaries.c.total_spend + new.total_spend,
        "total_margin": _add_nullable(_summaries.c.total_margin, new.total_margin),
        "total_cost": _add_nullable(_summaries.c.total_cost, new.total_cost),
        "discounted_spend": _summaries.c.discounted_spend + new.discounted_spend,
        # Sums at two rates are no sum at all: mark the row stale for the next refit.
        "discount_rate": case((_summaries.c.discount_rate == new.discount_rate, new.discount_rate), else_=None),
        "updated_at": new.updated_at,
    }


# The customer's purchase days, in a subquery of the upsert. `excluded` is spelled out:
# SQLAlchemy would add its table to the subquery's FROM (nothing to correlate it with).
_CUSTOMERS_DAYS = _other_day.c.customer_id == _EXCLUDED_CUSTOMER
_DAY_COUNT = select(func.count()).where(_CUSTOMERS_DAYS).scalar_subquery()
_FIRST_DAY = select(func.min(_other_day.c.day)).where(_CUSTOMERS_DAYS).scalar_subquery()
_FIRST_DAY_SPEND = (
    select(_other_day.c.spend).where(_CUSTOMERS_DAYS).order_by(_other_day.c.day).limit(1).scalar_subquery()
)


def _on_summary_conflict(statement):
    # The write's days are in purchase_days already: both read from there.
    return statement.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={**_summed(statement.excluded), "purchase_days": _DAY_COUNT, "first_day_spend": _FIRST_DAY_SPEND},
    )


async def add_to_summaries_with_their_day(session: AsyncSession, rows: list[dict]) -> None:
    """add_to_summaries for a write of one purchase day (one customer's: a purchase through
    the API) whose row waits in the same `writes_together` statement (PostgreSQL): one round
    trip for both. The statement does not see that row, so an existing summary reads the
    customer's other days (the snapshot before the statement, with every purchase of theirs:
    the customer's row is locked) and counts this one with them."""

    await bulk_upsert(session, _summaries, _SUMMARY_COLUMNS, rows, _on_summary_conflict_with_its_day)


def _on_summary_conflict_with_its_day(statement):
    # The day of the write: its first purchase's UTC date (summaries._day_of).
    day = sql_cast(func.timezone("UTC", literal_column("excluded.first_purchase_at")), Date)
    its_spend: ColumnClause[Decimal] = literal_column("excluded.first_day_spend")  # the write's spend that day
    known = select(literal(1)).where(_CUSTOMERS_DAYS, _other_day.c.day == day).exists()
    return statement.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={
            **_summed(statement.excluded),
            "purchase_days": _DAY_COUNT + case((known, 0), else_=1),
            "first_day_spend": case(
                (_FIRST_DAY.is_(None) | (day < _FIRST_DAY), its_spend),
                (day == _FIRST_DAY, _FIRST_DAY_SPEND + its_spend),
                else_=_FIRST_DAY_SPEND,
            ),
        },
    )


async def delete_summaries(session: AsyncSession, customer_ids) -> None:
    dialect = dialect_name(session)
    for chunk in key_chunks(customer_ids, dialect):
        for statement in _summary_deletes(dialect):
            await session.execute(statement, {"ids": chunk})


@cache
def _summary_deletes(dialect: str):
    return tuple(delete(table).where(one_of(table.c.customer_id, dialect)) for table in (_days, _summaries))
