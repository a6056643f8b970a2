"""The sweep: time moves customers too.

Every lifecycle process runs the schedule (`sweep_interval_s`, hourly by default); a
sweep runs only under the lease (`lifecycle_leases`, one row taken with one atomic
UPDATE, renewed after each chunk), so one replica sweeps at a time, and a replica
skips its turn when another swept within half an interval. `POST /v1/lifecycle/sweeps`
and a rule change run one at once.

A sweep walks the customers in chunks by id (`sweep_chunk`): one statement evaluates
every rule and the churn risk for the whole chunk in the database and answers only the
customers whose stage moves or whose stored risk changes (rules.py); one transaction
writes the chunk's moves, history rows, risks and events. Between chunks it yields to
the event loop, and on SQLite its statements run on a thread, so the API keeps
answering while it works. It is idempotent: a customer a rule moved no longer matches
the rule's `from`, and a risk is rewritten only when it moved.

Imported history is history: the first sweep that finishes over a database (none
finished before it) records its transitions with `historical: true`, and announces no
churn-risk band changes; playbooks fire on none of those. A later import can ask the
same with `POST /v1/lifecycle/sweeps {"historical": true}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.lifecycle.stages import repository
from services.lifecycle.stages.rules import DEFAULT_RULES, RISK_STEP, drivers_of, reason_values
from services.lifecycle.stages.service import announce_many
from shared.db.database import Database, dialect_name, utcnow
from shared.db.ids import uuid7
from shared.db.sqlite_inline import statements_on_threads
from shared.db.uow import transaction
from shared.events.consumer import caused_by
from shared.events.messaging import emit_many
from shared.http.errors import Conflict
from shared.service.runtime import Runtime
from shared.settings import LifecycleSettings

log = logging.getLogger("valuechain.lifecycle.sweeps")

DEFAULT_VERSION = 1
CHURN_RISK_CHANGED = "crm.lifecycle.churn_risk.changed"
SLICE = 1000  # changed customers written (and announced) between two yields to the event loop


class SweepRunning(Conflict):
    """409 sweep_running: another sweep holds the lease."""

    def __init__(self, holder: str | None):
        super().__init__(
            f"a sweep is running ({holder or 'another replica'}): try again when it has finished", error="sweep_running"
        )


async def current_rules(session: Any) -> tuple[int, list[dict[str, Any]], datetime | None]:
    """The rule set in force: its version, rules, and when it was made (None: the defaults)."""

    row = await repository.latest_rule_set(session)
    if row is None:
        return DEFAULT_VERSION, DEFAULT_RULES, None
    return row["version"], row["rules"], row["created_at"]


async def run(
    db: Database,
    settings: LifecycleSettings,
    *,
    trigger: str,
    historical: bool | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One sweep over every customer, under the lease; what it did. SweepRunning if the lease is held.

    `now` is the time the rules measure against (tests and benchmarks move it)."""

    statements_on_threads()  # on SQLite: its large statements must not hold up the API
    sweep_id = str(uuid7())
    started = utcnow()
    clock = time.perf_counter()
    async with transaction(db.writer) as session:
        if not await repository.take_lease(session, holder=sweep_id, now=started, until=_until(settings)):
            raise SweepRunning(await repository.lease_holder(session, now=started))
    try:
        async with transaction(db.writer) as session:
            version, rules, _ = await current_rules(session)
            if historical is None:
                historical = not await repository.any_sweep_done(session)
            record: dict[str, Any] = {
                "sweep_id": sweep_id,
                "trigger": trigger,
                "status": "running",
                "holder": sweep_id,
                "rule_version": version,
                "historical": historical,
                "started_at": started,
                "evaluated": 0,
                "transitions": 0,
                "risk_changes": 0,
            }
            await repository.insert_sweep(session, record)
            dialect = dialect_name(session)
        query = repository.chunk_query(
            rules,
            dialect=dialect,
            now=now or started,
            default_interval_days=settings.default_purchase_interval_days,
            signal_window_days=settings.signal_window_days,
        )
        chunk = _Chunk(sweep_id, f"sweep:{sweep_id}", version, rules, historical, query, now or started)
        after = ""
        while True:
            async with transaction(db.writer) as session:
                last, count = await repository.chunk_bound(session, after=after, size=settings.sweep_chunk)
                if last is None:
                    break
                await chunk.apply(session, after=after, last=last)
                record["evaluated"] += count
                if not await repository.take_lease(session, holder=sweep_id, now=utcnow(), until=_until(settings)):
                    raise RuntimeError("the sweep lost its lease (it expired while a chunk was written)")
            after = last
            await asyncio.sleep(0)  # let the API's requests in between chunks
        record.update(
            status="done",
            transitions=chunk.transitions,
            risk_changes=chunk.risk_changes,
            finished_at=utcnow(),
            duration_s=round(time.perf_counter() - clock, 3),
        )
        async with transaction(db.writer) as session:
            await repository.update_sweep(session, sweep_id, **_progress(record))
            await repository.release_lease(session, holder=sweep_id, now=utcnow())
        log.info("sweep done", extra={k: record[k] for k in ("sweep_id", "evaluated", "transitions", "duration_s")})
        return record
    except BaseException as exc:
        async with transaction(db.writer) as session:
            failed = {"status": "failed", "error": repr(exc)[:500], "finished_at": utcnow()}
            await repository.update_sweep(session, sweep_id, **failed)
            await repository.release_lease(session, holder=sweep_id, now=utcnow())
        raise


async def recent(*, session: Any, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """The sweeps, newest first."""

    return list(await repository.sweeps(session, after=after, limit=limit))


def _until(settings: LifecycleSettings) -> datetime:
    return utcnow() + timedelta(seconds=settings.sweep_lease_s)


def _progress(record: dict[str, Any]) -> dict[str, Any]:
    names = ("status", "evaluated", "transitions", "risk_changes", "finished_at", "duration_s")
    return {name: record[name] for name in names}


async def evaluate_now(session: Any, settings: LifecycleSettings, event: Any) -> int:
    """The rules and churn risk over `event`'s customer now, in the caller's transaction: a
    detractor answer or an escalated ticket moves its customer at once, not at the next sweep.
    The transition names the event. Before the first sweep has finished nothing is evaluated:
    that sweep records imported history as history (decisions.md) and sees the signal then."""

    if not await repository.any_sweep_done(session):
        return 0
    version, rules, _ = await current_rules(session)
    now = utcnow()
    query = repository.chunk_query(
        rules,
        dialect=dialect_name(session),
        now=now,
        default_interval_days=settings.default_purchase_interval_days,
        signal_window_days=settings.signal_window_days,
        by_ids=True,
    )
    await repository.lock_customer(session, event.customer_id)
    rows = await repository.evaluate_customers(session, query, [event.customer_id])
    chunk = _Chunk(event.id, event.id, version, rules, False, query, now)
    with caused_by(event):
        await chunk.apply_rows(session, rows)
    return chunk.transitions


class _Chunk:
    """Writes what the rules found in one chunk: moves with their reasons, risks, events.

    `event_id` is what each history row names as its cause (the sweep, or a signal's event),
    `cause` the `cause_event_id` of the events announcing them."""

    def __init__(
        self, event_id: str, cause: str, version: int, rules: list[dict[str, Any]], historical: bool, query: Any, at
    ):
        self.event_id, self.cause, self.version, self.rules = event_id, cause, version, rules
        self.historical, self.query, self.at = historical, query, at
        self.transitions = 0
        self.risk_changes = 0

    async def apply(self, session: Any, *, after: str, last: str) -> None:
        await repository.lock_range(session, after=after, last=last)
        rows = await repository.evaluate_chunk(session, self.query, after=after, last=last)
        # In slices, yielding between them: a chunk where most customers move (the first sweep
        # over imported data) would otherwise hold the event loop for all of its rows at once.
        for start in range(0, len(rows), SLICE):
            await self.apply_rows(session, rows[start : start + SLICE])
            await asyncio.sleep(0)

    async def apply_rows(self, session: Any, rows: Sequence[Any]) -> None:
        moves: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        risks: list[dict[str, Any]] = []
        crossed: list[dict[str, Any]] = []
        both: list[dict[str, Any]] = []
        cause = self.cause
        for row in rows:
            customer_id = row["customer_id"]
            if row["rule_index"] is not None:
                rule = self.rules[row["rule_index"]]
                transition = {
                    "customer_id": customer_id,
                    "from_stage": row["stage"],
                    "to_stage": rule["to"],
                    "at": self.at,
                    "event_id": self.event_id,
                    "rule": rule["name"],
                    "rule_version": self.version,
                    "values": reason_values(rule, row),
                    "historical": self.historical,
                }
                history.append(transition)
                move = {"key": customer_id, "from_stage": row["stage"], "to_stage": rule["to"], "at": self.at}
            else:
                move = None
            risk = _risk_row(row, self.at)
            if move is not None and risk is not None:
                both.append(move | risk)
            elif move is not None:
                moves.append(move)
            elif risk is not None:
                risks.append(risk)
            if risk is not None and self._announces(row) and risk["risk"] is not None:
                crossed.append(
                    {
                        "customer_id": customer_id,
                        "risk": risk["risk"],
                        "band": risk["band"],
                        "from_band": row["stored_band"],
                        "drivers": risk["drivers"],
                        "clv_at_risk": risk["clv_at_risk"],
                        "at": self.at,
                    }
                )
        if history:
            announce_many(session, history, cause_event_id=cause)
        if crossed:
            emit_many(session, CHURN_RISK_CHANGED, crossed, [c["customer_id"] for c in crossed])
        await repository.move_stages(session, moves)
        await repository.move_stages_and_store_risks(session, both)
        await repository.add_transitions(session, history)
        await repository.store_risks(session, risks)
        self.transitions += len(history)
        self.risk_changes += len(risks) + len(both)

    def _announces(self, row: Any) -> bool:
        """A band crossed: not a customer's first band when it is low, nor anything in history."""

        band, stored = row["band"], row["stored_band"]
        if self.historical or band == stored or band is None:
            return False
        return not (stored is None and band == "low")


def _risk_row(row: Any, at: datetime) -> dict[str, Any] | None:
    """The risk to store, when it changed band or moved by RISK_STEP; else None."""

    risk = row["churn_risk"]
    stored = row["stored_risk"]
    if row["band"] == row["stored_band"] and (risk is None or (stored is not None and abs(risk - stored) < RISK_STEP)):
        return None
    if risk is None:
        return {"key": row["customer_id"], "risk": None, "band": None, "clv_at_risk": None, "drivers": None, "at": at}
    risk = round(float(risk), 4)
    clv = row["predicted_clv"]
    return {
        "key": row["customer_id"],
        "risk": risk,
        "band": row["band"],
        "clv_at_risk": round(clv * risk, 2) if clv is not None else None,
        "drivers": drivers_of(row),
        "at": at,
    }


# --- the schedule ------------------------------------------------------------------------------


async def schedule(runtime: Runtime[Any]) -> None:
    """Sweep every `sweep_interval_s`, unless another replica swept within half of it."""

    settings: LifecycleSettings = runtime.settings  # type: ignore[assignment]
    interval = settings.sweep_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            async with runtime.db.reader() as session:
                last = await repository.last_done_sweep_start(session)
            if last is not None and (utcnow() - last).total_seconds() < interval / 2:
                continue
            await run(runtime.db, settings, trigger="schedule")
        except SweepRunning:
            log.info("scheduled sweep skipped: another replica is sweeping")
        except Exception:  # retried at the next tick
            log.exception("scheduled sweep failed")


async def start(runtime: Runtime[Any]) -> None:
    """lifecycle's start-up hook: sweeps a stopped process left running failed; the schedule."""

    now = utcnow()
    async with transaction(runtime.db.writer) as session:
        holder = await repository.lease_holder(session, now=now)
        await repository.fail_running_sweeps(session, except_holder=holder, now=now)
    settings: LifecycleSettings = runtime.settings  # type: ignore[assignment]
    if settings.sweep_interval_s > 0:
        runtime.start_leased("lifecycle-sweep-schedule", lambda: schedule(runtime))
