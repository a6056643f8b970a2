"""lifecycle's queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Select, and_, bindparam, case, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.lifecycle.models import CustomerStage, StageTransition, profiles
from services.lifecycle.stages.models import CustomerSignals, Lease, StageRuleSet, Sweep
from services.lifecycle.stages.rules import RISK_STEP, Frame
from shared.db.bulk import bulk_execute, bulk_insert, bulk_upsert, one_of
from shared.db.database import dialect_name, insert_ignoring


def cast_rowcount(result: Any) -> int:
    """The rows an UPDATE or INSERT matched (CursorResult's; typed as any Result)."""

    return int(result.rowcount)


_stages = CustomerStage.__table__
_transitions = StageTransition.__table__


async def stages_of(session: AsyncSession, customer_ids: set[str]) -> dict[str, dict]:
    """The customers' stage rows, locked until the transaction ends (on PostgreSQL; SQLite has
    one writer): what is decided from them is written before a sweep or another consumer may
    move them. Locked in id order, as lock_range() locks a sweep's chunk, so neither waits
    for the other in a cycle."""

    if not customer_ids:
        return {}
    rows = await session.execute(_stages_of(dialect_name(session)), {"ids": list(customer_ids)})
    return {row.customer_id: dict(row._mapping) for row in rows}


@cache
def _stages_of(dialect: str) -> Select[Any]:
    """Built once: every purchase asks it."""
    return (
        select(_stages).where(one_of(_stages.c.customer_id, dialect)).order_by(_stages.c.customer_id).with_for_update()
    )


async def lock_range(session: AsyncSession, *, after: str, last: str) -> None:
    """Lock a sweep chunk's stage rows (PostgreSQL) before it evaluates them: a purchase applied
    between its read and its write would otherwise make it record a move that its guarded
    UPDATE then skips (a history row and an event for a move that never happened)."""

    if dialect_name(session) == "sqlite":
        return  # one writer: nothing runs between the chunk's read and its write
    ids = _stages.c.customer_id
    await session.execute(select(ids).where(ids > after, ids <= last).order_by(ids).with_for_update())


async def lock_customer(session: AsyncSession, customer_id: str) -> None:
    """lock_range() for one customer (a signal's evaluation)."""

    if dialect_name(session) != "sqlite":
        await session.execute(
            select(_stages.c.customer_id).where(_stages.c.customer_id == customer_id).with_for_update()
        )


STAGE_COLUMNS = ("customer_id", "stage", "purchase_count", "updated_at", "stage_since")


def _set_stage_on_conflict(statement):
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={name: new[name] for name in STAGE_COLUMNS[1:]},
    )


async def save_stages(session: AsyncSession, rows: list[dict]) -> None:
    """Insert the new and update the changed stage rows (their STAGE_COLUMNS; a sweep's
    columns stay) in one upsert: on PostgreSQL one statement for all of them, which a
    `writes_together` block sends with the rest (an UPDATE was an execution per row).
    Rows may carry more (a row as stages_of read it): only STAGE_COLUMNS are written."""

    await bulk_upsert(
        session,
        _stages,
        STAGE_COLUMNS,
        [dict(zip(STAGE_COLUMNS, _stage_values(row))) for row in rows],
        _set_stage_on_conflict,
    )


_stage_values = itemgetter(*STAGE_COLUMNS)


async def absorb_merged(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    """The merged customers' transitions join the survivor's history; their stage rows go."""

    await session.execute(
        update(_transitions).where(_transitions.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )
    await session.execute(delete(_stages).where(_stages.c.customer_id.in_(merged_ids)))


_READ_STAGE = select(_stages).where(_stages.c.customer_id == bindparam("customer_id"))
# In time order: after a merge the history interleaves transitions recorded for several ids.
_READ_HISTORY = (
    select(_transitions)
    .where(_transitions.c.customer_id == bindparam("customer_id"))
    .order_by(_transitions.c.at, _transitions.c.seq)
)


async def read_lifecycle(session: AsyncSession, customer_id: str):
    stage = (await session.execute(_READ_STAGE, {"customer_id": customer_id})).mappings().first()
    if stage is None:
        return None, []
    history = (await session.execute(_READ_HISTORY, {"customer_id": customer_id})).mappings().all()
    return stage, history


# When each customer entered its stage: its latest transition to it (a merge can bring
# older transitions to the same stage along), one index probe per customer listed.
_SINCE = (
    select(func.max(_transitions.c.at))
    .where(_transitions.c.customer_id == _stages.c.customer_id, _transitions.c.to_stage == _stages.c.stage)
    .correlate(_stages)
    .scalar_subquery()
)


async def customers_in_stage(session: AsyncSession, *, stage: str | None, after_id: str | None, limit: int):
    """Customers with a stage (only `stage`'s when given), in id order: customer_id, stage, since."""

    query = (
        select(_stages.c.customer_id, _stages.c.stage, _SINCE.label("since"))
        .order_by(_stages.c.customer_id)
        .limit(limit)
    )
    query = query.where(_stages.c.stage == stage) if stage is not None else query.where(_stages.c.stage.is_not(None))
    if after_id is not None:
        query = query.where(_stages.c.customer_id > after_id)
    return (await session.execute(query)).mappings().all()


# --- the sweep ------------------------------------------------------------------------------

_profiles = profiles.table
_signals = CustomerSignals.__table__
_rule_sets = StageRuleSet.__table__
_sweeps = Sweep.__table__
_leases = Lease.__table__


def chunk_query(
    rules: list[dict[str, Any]],
    *,
    dialect: str,
    now: datetime,
    default_interval_days: float,
    signal_window_days: float,
    by_ids: bool = False,
) -> Select[Any]:
    """The customers with a stage whose id is in (:after, :last] (`by_ids`: in :ids) and whose
    stage or stored churn risk the rules change: every column of `Frame.columns`. Built once
    per sweep."""

    frame = Frame(_stages, _profiles, _signals, dialect, now, default_interval_days, signal_window_days)
    s = _stages.c
    chosen: ColumnElement[bool]
    if by_ids:
        chosen = s.customer_id.in_(bindparam("ids", expanding=True))
    else:
        chosen = and_(s.customer_id > bindparam("after"), s.customer_id <= bindparam("last"))
    # Materialized: each customer's dates are turned into days once, not once per use.
    base = frame.base().where(chosen, s.stage.is_not(None)).cte("base").prefix_with("MATERIALIZED")
    inner = select(*frame.columns(base.c, rules)).subquery("evaluated")
    e = inner.c
    changed = or_(
        e.rule_index.is_not(None),
        e.band.is_distinct_from(e.stored_band),
        func.abs(e.churn_risk - e.stored_risk) >= RISK_STEP,
    )
    return select(inner).where(changed)


async def chunk_bound(session: AsyncSession, *, after: str, size: int) -> tuple[str | None, int]:
    """The last customer id of the next `size` customers after `after`, and how many there are."""

    ids = (
        select(_stages.c.customer_id)
        .where(_stages.c.customer_id > after)
        .order_by(_stages.c.customer_id)
        .limit(size)
        .subquery()
    )
    row = (await session.execute(select(func.max(ids.c.customer_id), func.count()).select_from(ids))).one()
    return row[0], row[1]


async def evaluate_chunk(session: AsyncSession, query: Select[Any], *, after: str, last: str) -> Sequence[Any]:
    return (await session.execute(query, {"after": after, "last": last})).mappings().all()


async def evaluate_customers(session: AsyncSession, query: Select[Any], customer_ids: list[str]) -> Sequence[Any]:
    """chunk_query(by_ids=True)'s rows for these customers."""

    return (await session.execute(query, {"ids": customer_ids})).mappings().all()


_MOVE = (
    update(_stages)
    .where(_stages.c.customer_id == bindparam("key"), _stages.c.stage == bindparam("from_stage"))
    .values(stage=bindparam("to_stage"), stage_since=bindparam("at"), updated_at=bindparam("at"))
)
# A customer's stored churn risk, as a sweep writes it.
_RISK_VALUES = {
    "churn_risk": bindparam("risk"),
    "churn_band": bindparam("band"),
    "clv_at_risk": bindparam("clv_at_risk"),
    "risk_drivers": bindparam("drivers", type_=JSON),
    "risk_at": bindparam("at"),
}
_RISK = update(_stages).where(_stages.c.customer_id == bindparam("key")).values(**_RISK_VALUES)
# Both at once, for a customer that moves and whose risk changes (most, in a first sweep).
_MOVE_AND_RISK = _MOVE.values(**_RISK_VALUES)
TRANSITION_COLUMNS = (
    "customer_id",
    "from_stage",
    "to_stage",
    "at",
    "event_id",
    "rule",
    "rule_version",
    "values",
    "historical",
)


async def move_stages(session: AsyncSession, moves: list[dict[str, Any]]) -> None:
    """Each {key, from_stage, to_stage, at}: the customer's new stage, if it still has from_stage."""

    await bulk_execute(session, _MOVE, moves)


async def store_risks(session: AsyncSession, risks: list[dict[str, Any]]) -> None:
    await bulk_execute(session, _RISK, risks)


async def move_stages_and_store_risks(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """move_stages() and store_risks() in one UPDATE per customer: a move's keys and a risk's."""

    await bulk_execute(session, _MOVE_AND_RISK, rows)


async def add_transitions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await bulk_insert(session, _transitions, TRANSITION_COLUMNS, list(map(_transition_tuple, rows)))


_transition_tuple = itemgetter(*TRANSITION_COLUMNS)


# --- rule sets -----------------------------------------------------------------------------


async def latest_rule_set(session: AsyncSession) -> dict[str, Any] | None:
    query = select(_rule_sets).order_by(_rule_sets.c.version.desc()).limit(1)
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def insert_rule_set(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_rule_sets.insert(), [row])


async def rule_sets(session: AsyncSession, *, before: int | None, limit: int) -> Sequence[Any]:
    """Stored versions, newest first."""

    query = select(_rule_sets).order_by(_rule_sets.c.version.desc()).limit(limit)
    if before is not None:
        query = query.where(_rule_sets.c.version < before)
    return (await session.execute(query)).mappings().all()


# --- sweeps and the lease ------------------------------------------------------------------

SWEEP_LEASE = "sweep"


async def take_lease(session: AsyncSession, *, holder: str, now: datetime, until: datetime) -> bool:
    """One atomic UPDATE: the lease is the holder's if it expired or was already its own.
    The row is made on first use (two first takers: one insert wins, the other retries the
    UPDATE and finds the lease held)."""

    taken = await session.execute(
        update(_leases)
        .where(_leases.c.name == SWEEP_LEASE, or_(_leases.c.expires_at < now, _leases.c.holder == holder))
        .values(holder=holder, expires_at=until)
    )
    if cast_rowcount(taken) == 1:
        return True
    made = await session.execute(
        insert_ignoring(session, _leases, ["name"]).values(name=SWEEP_LEASE, holder=holder, expires_at=until)
    )
    return cast_rowcount(made) == 1


async def release_lease(session: AsyncSession, *, holder: str, now: datetime) -> None:
    await session.execute(
        update(_leases)
        .where(_leases.c.name == SWEEP_LEASE, _leases.c.holder == holder)
        .values(holder=None, expires_at=now)
    )


async def lease_holder(session: AsyncSession, *, now: datetime) -> str | None:
    query = select(_leases.c.holder).where(_leases.c.name == SWEEP_LEASE, _leases.c.expires_at >= now)
    return (await session.execute(query)).scalar()


async def insert_sweep(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_sweeps.insert(), [row])


async def update_sweep(session: AsyncSession, sweep_id: str, **values: Any) -> None:
    await session.execute(update(_sweeps).where(_sweeps.c.sweep_id == sweep_id).values(**values))


async def any_sweep_done(session: AsyncSession) -> bool:
    query = select(_sweeps.c.sweep_id).where(_sweeps.c.status == "done").limit(1)
    return (await session.execute(query)).first() is not None


async def last_done_sweep_start(session: Any) -> datetime | None:
    """When the latest finished sweep started (a read session of either kind)."""

    query = select(func.max(_sweeps.c.started_at)).where(_sweeps.c.status == "done")
    return (await session.execute(query)).scalar()


async def fail_running_sweeps(session: AsyncSession, *, except_holder: str | None, now: datetime) -> None:
    """Sweeps left running by a process that stopped (whose lease is gone) failed."""

    query = update(_sweeps).where(_sweeps.c.status == "running")
    if except_holder is not None:
        query = query.where(_sweeps.c.sweep_id != except_holder)
    await session.execute(query.values(status="failed", error="interrupted: its process stopped", finished_at=now))


async def sweeps(session: AsyncSession, *, after: tuple[datetime, str] | None, limit: int) -> Sequence[Any]:
    """Sweeps, newest first."""

    query = select(_sweeps).order_by(_sweeps.c.started_at.desc(), _sweeps.c.sweep_id.desc()).limit(limit)
    if after is not None:
        query = query.where(tuple_(_sweeps.c.started_at, _sweeps.c.sweep_id) < tuple_(*after))
    return (await session.execute(query)).mappings().all()


async def sweep(session: AsyncSession, sweep_id: str) -> Any:
    return (await session.execute(select(_sweeps).where(_sweeps.c.sweep_id == sweep_id))).mappings().first()


# --- signals ---------------------------------------------------------------------------------


async def record_signals(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Each customer's newest detractor and high-effort answers and escalation, added to what
    is known (a null is no news); escalations add up."""

    g = _signals.c

    def newer(x: Any, name: str, at: str) -> Any:
        take = and_(x[at].is_not(None), or_(g[at].is_(None), x[at] > g[at]))
        return case((take, x[name]), else_=g[name])

    def on_conflict(insert: Any) -> Any:
        x = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={
                "detractor_at": newer(x, "detractor_at", "detractor_at"),
                "nps": newer(x, "nps", "detractor_at"),
                "high_effort_at": newer(x, "high_effort_at", "high_effort_at"),
                "effort": newer(x, "effort", "high_effort_at"),
                "escalated_at": newer(x, "escalated_at", "escalated_at"),
                "escalations": g.escalations + x.escalations,
            },
        )

    await bulk_upsert(session, _signals, SIGNAL_COLUMNS, rows, on_conflict)


SIGNAL_COLUMNS = ("customer_id", "detractor_at", "nps", "high_effort_at", "effort", "escalated_at", "escalations")


async def absorb_merged_signals(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    """The merged customers' signals join the survivor's (newest of each, escalations added)."""

    rows = (await session.execute(select(_signals).where(_signals.c.customer_id.in_(merged_ids)))).mappings().all()
    await session.execute(delete(_signals).where(_signals.c.customer_id.in_(merged_ids)))
    await record_signals(session, [{**dict(row), "customer_id": survivor_id} for row in rows])


# --- at risk -------------------------------------------------------------------------------------


async def at_risk(
    session: AsyncSession,
    *,
    after: tuple[float, str] | None,
    limit: int,
    stages: list[str] | None,
    band: str | None,
    min_risk: float | None,
) -> Sequence[Any]:
    """Customers with a stored churn risk by CLV at risk, highest first (then id)."""

    s = _stages.c
    query = (
        select(
            s.customer_id,
            s.stage,
            s.churn_risk,
            s.churn_band.label("band"),
            _profiles.c.predicted_clv,
            s.clv_at_risk,
            s.risk_drivers.label("drivers"),  # never null beside a CLV at risk
            s.risk_at.label("at"),
        )
        .outerjoin(_profiles, _profiles.c.customer_id == s.customer_id)
        .where(s.clv_at_risk.is_not(None))
        .order_by(s.clv_at_risk.desc(), s.customer_id)
        .limit(limit)
    )
    if after is not None:
        value, customer_id = after
        query = query.where(or_(s.clv_at_risk < value, and_(s.clv_at_risk == value, s.customer_id > customer_id)))
    if stages:
        query = query.where(s.stage.in_(stages))
    if band is not None:
        query = query.where(s.churn_band == band)
    if min_risk is not None:
        query = query.where(s.churn_risk >= min_risk)
    return (await session.execute(query)).mappings().all()
