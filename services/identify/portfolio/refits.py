"""Refits: fit a new model version from the whole portfolio and re-score everyone.

A refit runs as a background task of the service, one at a time (a lock holds the
next). The queue is bounded: at most one refit runs and one waits. A request while
one is queued joins it (same parameters) or is refused with 409 `refit_queued`
(different ones): ten requests make at most two refits, not ten full re-scorings. A
partial unique index (`uq_portfolio_refits_queued`) holds "one queued" even for
requests racing in two transactions.

Reading a million summaries and writing a million score rows would hold SQLite's
single writer for seconds, so the bulk read uses a connection of its own and the
scores are written in chunks, each its own short transaction, letting recorded
purchases interleave. Each chunk's transaction also reads the chunk's previous scores
and emits `crm.identify.customer.scored` for the customers whose segment, kinds or
CLV band changed, so the events commit with the scores they describe. The scores' CLV
indexes are dropped for that write and built again after it, failed or not (see
repository.RANK_INDEXES: kept row by row they made it ten times slower). With
replicas (issue 17), the replica that queued a refit holds its lease `refit:<id>` while it
waits and runs, and refits run one at a time across replicas (the lease `refits`); one
whose replica stopped or died is marked failed by the reaper one replica runs (at once,
then every lease TTL), not resumed: requesting a new one is always safe.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from typing import Any, Protocol

import numpy as np
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.identify.analysis import (
    BGNBDParams,
    GammaGammaParams,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    mean_repeat_spend,
    quintile_edges,
    rfm_summary,
)
from services.identify.models import PortfolioModel, Refit
from services.identify.portfolio import repository
from services.identify.portfolio.repository import day_number
from services.identify.portfolio.scoring import (
    UNIT_DAYS,
    Model,
    clv_band_codes,
    emit_scored,
    forget_model,
    helpful_benchmarks,
    kinds_of,
    referred_by_benchmarks,
    rfm_inputs,
    score,
    score_columns,
)
from services.identify.portfolio.summaries import rebuild_summaries
from services.identify.portfolio.views import refit_views
from services.identify.settings import PortfolioSettings, portfolio_settings
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.db.sqlite_inline import statements_on_threads
from shared.db.uow import transaction
from shared.events.messaging import emit
from shared.http.errors import Conflict
from shared.service.runtime import Runtime

log = logging.getLogger("valuechain.identify.refits")
WRITE_CHUNK = 20_000


class NoData(Exception):
    """Nothing to fit: the refit fails with this message."""


def calibration_summary(calibration: dict[str, np.ndarray], *, end_day: int, unit_days: int):
    """(x, t_x, T, mean repeat spend) of the calibration customers, or NoData."""

    keep = calibration["first_day"] <= end_day
    if keep.sum() < 10:
        raise NoData(f"too few customers with purchases to fit ({int(keep.sum())}; need at least 10)")
    data = {key: values[keep] for key, values in calibration.items()}
    x, t_x, T = rfm_summary(data["first_day"], data["last_day"], data["purchase_days"], end_day, unit_days)
    mean_spend = mean_repeat_spend(data["total_spend"], data["first_day_spend"], x)
    if int(((x > 0) & (mean_spend > 0)).sum()) < 2:
        raise NoData("too few repeat buyers with spend to fit the spend model (need at least 2)")
    return x, t_x, T, mean_spend


def fit_pareto_nbd_params(x, t_x, T) -> dict:
    return asdict(fit_pareto_nbd(x, t_x, T))


async def _pareto_nbd_outcome(fit: asyncio.Future) -> tuple[dict | None, str | None]:
    """(params, None), or (None, why) when the fit found no optimum.

    Pareto/NBD is reported beside BG/NBD, not used for scores; on a small or degenerate
    base (nobody seems to drop out) its likelihood has no finite maximum and the fit
    stops without one. That must not cost the refit its BG/NBD scores.
    """
    try:
        return await fit, None
    except (ArithmeticError, ValueError) as exc:
        log.warning("Pareto/NBD fit failed; the model has BG/NBD only", extra={"error": str(exc)})
        return None, str(exc)


class RefitQueued(Conflict):
    """A refit with other parameters is already waiting: one queued refit at most."""

    error = "refit_queued"

    def __init__(self, queued: Refit):
        asked = f"time_unit={queued.time_unit}, calibration_end={queued.calibration_end or 'null'}"
        super().__init__(
            f"refit {queued.id} is already queued ({asked}) and only one refit waits at a time: "
            "wait for it to start, then request again"
        )
        self.queued = queued


class RefitRunner:
    """Owns the refit queue of one service process."""

    def __init__(self, runtime, settings: PortfolioSettings | None = None):
        self.runtime = runtime
        self.settings = settings or portfolio_settings()
        self.lock = asyncio.Lock()

    @property
    def db(self):
        return self.runtime.db

    async def request(self, *, calibration_end: date | None, time_unit: str) -> tuple[Refit, bool]:
        """(the refit, whether this request joined one already queued).

        Raises RefitQueued when the queued refit has other parameters."""

        for attempt in range(2):
            try:
                async with transaction(self.db.writer) as session:
                    queued = await repository.queued_refit(session)
                    if queued is not None:
                        if (queued.time_unit, queued.calibration_end) != (time_unit, calibration_end):
                            raise RefitQueued(queued)
                        return queued, True
                    refit = Refit(
                        id=uuid7(),
                        status="queued",
                        time_unit=time_unit,
                        calibration_end=calibration_end,
                        customers_scored=0,
                        requested_at=utcnow(),
                    )
                    session.add(refit)
                    claimed = await self.runtime.leases.claim(session, refit_lease(refit.id))
            except IntegrityError:  # another transaction queued one first: join or refuse that one
                if attempt:
                    raise
                continue
            break
        # This replica holds the refit's lease while it waits and runs: if the replica dies, the
        # reaper (one replica's) marks the refit failed once the lease runs out.
        self.runtime.leases.adopt(refit_lease(refit.id), claimed)
        task = asyncio.create_task(
            self.runtime.leases.run_leased(refit_lease(refit.id), lambda: self._run(refit.id), standby=False),
            name=f"refit-{refit.id}",
        )
        self.runtime.tasks.append(task)  # cancelled with the service
        task.add_done_callback(self.runtime.tasks.remove)
        return refit, False

    async def _set(self, refit_id: str, **values) -> None:
        async with transaction(self.db.writer) as session:
            refit = await session.get(Refit, refit_id)
            for key, value in values.items():
                setattr(refit, key, value)

    async def _run(self, refit_id: str) -> None:
        statements_on_threads()  # on SQLite: its large statements must not hold up the API
        # One refit at a time across the replicas (the lease), and within this one (the lock).
        async with self.lock, self.runtime.leases.exclusively("refits"):
            await self._set(refit_id, status="running")
            try:
                version, scored = await self.refit(refit_id)
            except Exception as exc:  # the job reports any failure
                if not isinstance(exc, NoData):
                    log.exception("refit %s failed", refit_id)
                await self._set(
                    refit_id, status="failed", failure=str(exc) or exc.__class__.__name__, finished_at=utcnow()
                )
                return
            await self._set(
                refit_id, status="done", model_version=version, customers_scored=scored, finished_at=utcnow()
            )

    async def refit(self, refit_id: str) -> tuple[int, int]:
        async with self.db.reader() as session:
            refit = await repository.get_refit(session, refit_id)
        assert refit is not None, "called with the id of a queued refit"
        unit_days = UNIT_DAYS[refit.time_unit]
        settings = self.settings
        await self._refresh_discounts()
        async with repository.bulk_reader(self.db.url) as session:
            arrays = await repository.load_customers(session)
            if not len(arrays):
                raise NoData("no purchases recorded yet: nothing to fit")
            as_of_day = int(arrays.last_day.max())  # the last day with a purchase
            arrays.compound_to(as_of_day, settings.discount_rate)
            if refit.calibration_end:
                end_day = day_number(refit.calibration_end)
                calibration = await repository.load_calibration(session, end_day=end_day)
            else:  # the summaries are the calibration data
                end_day = as_of_day
                calibration = {
                    "first_day": arrays.first_day,
                    "last_day": arrays.last_day,
                    "purchase_days": arrays.purchase_days,
                    "total_spend": arrays.total_spend,
                    "first_day_spend": arrays.first_day_spend,
                }

        x, t_x, T, mean_spend = calibration_summary(calibration, end_day=end_day, unit_days=unit_days)
        # Pareto/NBD is the slowest fit and scoring does not need it: it runs on a thread
        # of its own beside the rest. (A separate process measured no faster.)
        pareto_nbd = asyncio.ensure_future(asyncio.to_thread(fit_pareto_nbd_params, x, t_x, T))

        def compute(referred: dict, helpful: dict, shipped: dict, version: int):
            fitted: dict[str, Any] = {
                "bgnbd": asdict(fit_bgnbd(x, t_x, T)),
                "gamma_gamma": asdict(fit_gamma_gamma(x, mean_spend)),
                "customers": len(x),
                "repeat_buyers": int((x > 0).sum()),
            }
            inputs = rfm_inputs(arrays, as_of_day)
            edges = {key: quintile_edges(values).tolist() for key, values in inputs.items()}
            scores = score(
                arrays,
                bgnbd=BGNBDParams(**fitted["bgnbd"]),
                gamma_gamma=GammaGammaParams(**fitted["gamma_gamma"]),
                rfm_edges=edges,
                unit_days=unit_days,
                as_of_day=as_of_day,
                settings=settings,
            )
            finite = scores.predicted_clv[np.isfinite(scores.predicted_clv)]
            thresholds = {
                "high_future_value": float(np.quantile(finite, 1 - settings.high_value_top)) if len(finite) else 0.0,
                "cost_absorber_purchases": float(np.quantile(arrays.purchases, 1 - settings.cost_absorber_top)),
            }
            kinds, evidence, kind_rows = kinds_of(
                arrays,
                scores,
                high_value_threshold=thresholds["high_future_value"],
                cost_absorber_purchases=thresholds["cost_absorber_purchases"],
                settings=settings,
                referred=referred,
                helpful=helpful,
                shipped=shipped,
            )
            columns = score_columns(arrays, scores, kinds, evidence, version=version)
            bands = clv_band_codes(scores.predicted_clv, settings.clv_band_edges)
            views = refit_views(arrays, scores, kind_rows, settings=settings)
            return fitted, edges, thresholds, kind_rows, columns, bands, views

        try:
            async with self.db.reader() as session:
                referred = await referred_by_benchmarks(session, arrays, settings)
                helpful = await helpful_benchmarks(session, settings)
                shipped = await repository.shipped_ideas(session)
            latest = await self._latest_model()
            version = (latest.version if latest else 0) + 1
            previous_edges = latest.clv_band_edges if latest else settings.clv_band_edges
            at = utcnow()
            # The numbers and the rows to write are made on a worker thread: the event
            # loop keeps serving requests meanwhile.
            fitted, edges, thresholds, kind_rows, columns, bands, views = await asyncio.to_thread(
                compute, referred, helpful, shipped, version
            )
            async with self._rank_indexes_dropped():
                for start in range(0, len(arrays), WRITE_CHUNK):
                    chunk = {name: values[start : start + WRITE_CHUNK] for name, values in columns.items()}
                    ids = chunk["customer_id"]
                    async with transaction(self.db.writer) as session:
                        previous = await repository.previous_scores_between(session, ids[0], ids[-1])
                        await repository.write_scores(session, chunk, at=at)
                        emit_scored(
                            session,
                            chunk,
                            bands[start : start + WRITE_CHUNK],
                            previous,
                            previous_edges=previous_edges,
                            at=at,
                        )
            fitted["pareto_nbd"], pareto_error = await _pareto_nbd_outcome(pareto_nbd)
        finally:
            pareto_nbd.cancel()
        params = {
            **fitted,
            "rfm_edges": edges,
            "thresholds": thresholds,
            "as_of_day": as_of_day,
            "discount_rate": settings.discount_rate,
            "clv_horizon_days": settings.clv_horizon_days,
            "pareto_nbd_error": pareto_error,
            "clv_band_edges": list(settings.clv_band_edges),
        }
        # The model version, the kinds, the views and the event commit together: until then
        # the previous model stays current for per-transaction re-scores, and its views are served.
        async with transaction(self.db.writer) as session:
            session.add(
                PortfolioModel(
                    version=version,
                    time_unit=refit.time_unit,
                    calibration_end=refit.calibration_end,
                    params=params,
                    fitted_at=at,
                )
            )
            await repository.replace_kinds(session, kind_rows, customer_ids=None)
            await repository.store_views(session, views, model_version=version, at=at)
            emit(
                session,
                "crm.identify.model.fitted",
                {
                    "version": version,
                    "time_unit": refit.time_unit,
                    "calibration_end": refit.calibration_end,
                    "customers_scored": len(arrays),
                    "fitted_at": at,
                    **{key: fitted[key] for key in ("bgnbd", "pareto_nbd", "gamma_gamma")},
                },
            )
        forget_model(self.db.writer_engine)
        return version, len(arrays)

    @asynccontextmanager
    async def _rank_indexes_dropped(self):
        """Without the CLV indexes for the bulk write of scores, and with them again
        after it, whether it finished or failed (see repository.RANK_INDEXES). Lists
        sorted by CLV scan the scores meanwhile; per-purchase re-scores keep the indexes
        current the rest of the time."""

        try:
            async with transaction(self.db.writer) as session:
                await repository.drop_rank_indexes(session)
        except DBAPIError:  # PostgreSQL's lock_timeout: a long reader holds the scores
            log.warning("refit writes its scores with the CLV indexes: they could not be dropped", exc_info=True)
        try:
            yield
        finally:
            # One transaction each: on SQLite a build holds the writer (recorded purchases
            # wait), ~0.8 s and ~1.0 s for a million scores rather than ~1.8 s at once.
            for index in repository.RANK_INDEXES:
                async with transaction(self.db.writer) as session:
                    await repository.ensure_rank_indexes(session, [index])

    async def _latest_model(self) -> Model | None:
        async with self.db.reader() as session:
            row = await repository.latest_model(session)
            return Model.from_row(row) if row is not None else None

    async def _refresh_discounts(self) -> None:
        """Recompute the compounded spend of summaries made at another discount rate."""

        async with self.db.reader() as session:
            stale = await repository.stale_discounts(session, self.settings.discount_rate)
        for start in range(0, len(stale), 1000):
            async with transaction(self.db.writer) as session:
                await rebuild_summaries(session, stale[start : start + 1000])


class RefitsState(Protocol):
    """What the refits need of identify's state (Runtime.state): the process's runner."""

    @property
    def refits(self) -> RefitRunner: ...


async def schedule(runner: RefitRunner) -> None:
    """Refit every `refit_interval_s` (0 turns the schedule off), weekly time unit."""

    interval = runner.settings.refit_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await runner.request(calibration_end=None, time_unit="week")
        except RefitQueued as queued:  # a requested refit is waiting: the schedule does not add one
            log.info("scheduled refit skipped: refit %s is queued", queued.queued.id)
        except Exception:  # a failed request is retried at the next tick
            log.exception("scheduled refit could not be requested")


def refit_lease(refit_id: str) -> str:
    return f"refit:{refit_id}"


async def fail_interrupted_refits(runtime: Runtime[Any], *, rebuild_indexes: bool = False) -> int:
    """Fail the refits queued or running in a replica that is gone (nobody holds their lease),
    and build the CLV indexes one killed mid-write left dropped (when it failed one, or asked)."""

    async with transaction(runtime.db.writer) as session:
        failed = await repository.fail_interrupted_refits(
            session, leases=runtime.leases.table, prefix=refit_lease(""), grace_s=runtime.leases.ttl_s
        )
        if failed or rebuild_indexes:
            await repository.ensure_rank_indexes(session)
    return failed


async def start(runtime: Runtime[RefitsState]) -> None:
    """identify's start-up hook: one replica fails interrupted refits (at once, then every
    lease TTL) and runs the schedule."""

    async def reap() -> None:
        first = True  # a refit killed mid-write may have left the indexes dropped
        while True:
            try:
                await fail_interrupted_refits(runtime, rebuild_indexes=first)
                first = False
            except Exception as exc:  # noqa: BLE001 - the next turn tries again
                log.warning("looking for interrupted refits failed", extra={"error": repr(exc)})
            await asyncio.sleep(runtime.leases.ttl_s)

    runtime.start_leased("refit-reaper", reap)
    runtime.start_leased("refit-schedule", lambda: schedule(runtime.state.refits))
