"""Refits: fit a new model version from the whole portfolio and re-score everyone.

A refit runs as a background task of the service, one at a time (a lock queues the
rest). Reading a million summaries and writing a million score rows would hold
SQLite's single writer for seconds, so the bulk read uses a connection of its own
and the scores are written in chunks, each its own short transaction, letting
recorded purchases interleave. A refit interrupted by a restart is marked failed at
start-up; requesting a new one is always safe.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import date

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from services.identify.analysis import (
    BGNBDParams,
    GammaGammaParams,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    quintile_edges,
    rfm_summary,
)
from services.identify.models import PortfolioModel, PurchaseDay, Refit
from services.identify.portfolio import repository
from services.identify.portfolio.repository import day_number
from services.identify.portfolio.scoring import (
    UNIT_DAYS,
    kinds_of,
    rfm_inputs,
    score,
    score_rows,
)
from services.identify.portfolio.settings import PortfolioSettings, portfolio_settings
from shared.db import utcnow
from shared.ids import uuid7
from shared.messaging import emit
from shared.uow import transaction

log = logging.getLogger("valuechain.identify.refits")
WRITE_CHUNK = 20_000


class NoData(Exception):
    """Nothing to fit: the refit fails with this message."""


def fit_models(calibration: dict[str, np.ndarray], *, end_day: int, unit_days: int) -> dict:
    """BG/NBD, Pareto/NBD and Gamma-Gamma on the calibration summaries."""

    keep = calibration["first_day"] <= end_day
    if keep.sum() < 10:
        raise NoData(f"too few customers with purchases to fit ({int(keep.sum())}; need at least 10)")
    data = {key: values[keep] for key, values in calibration.items()}
    x, t_x, T = rfm_summary(data["first_day"], data["last_day"], data["purchase_days"], end_day, unit_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_spend = np.where(x > 0, (data["total_spend"] - data["first_day_spend"]) / np.maximum(x, 1), 0.0)
    if int(((x > 0) & (mean_spend > 0)).sum()) < 2:
        raise NoData("too few repeat buyers with spend to fit the spend model (need at least 2)")
    return {
        "bgnbd": asdict(fit_bgnbd(x, t_x, T)),
        "pareto_nbd": asdict(fit_pareto_nbd(x, t_x, T)),
        "gamma_gamma": asdict(fit_gamma_gamma(x, mean_spend)),
        "customers": int(len(x)),
        "repeat_buyers": int((x > 0).sum()),
    }


class RefitRunner:
    """Owns the refit queue of one service process."""

    def __init__(self, runtime, settings: PortfolioSettings | None = None):
        self.runtime = runtime
        self.settings = settings or portfolio_settings()
        self.lock = asyncio.Lock()

    @property
    def db(self):
        return self.runtime.db

    async def request(self, *, calibration_end: date | None, time_unit: str) -> Refit:
        async with transaction(self.db.writer) as session:
            refit = Refit(
                id=uuid7(), status="queued", time_unit=time_unit, calibration_end=calibration_end,
                customers_scored=0, requested_at=utcnow(),
            )
            session.add(refit)
        task = asyncio.create_task(self._run(refit.id), name=f"refit-{refit.id}")
        self.runtime.tasks.append(task)  # cancelled with the service
        task.add_done_callback(self.runtime.tasks.remove)
        return refit

    async def _set(self, refit_id: str, **values) -> None:
        async with transaction(self.db.writer) as session:
            refit = await session.get(Refit, refit_id)
            for key, value in values.items():
                setattr(refit, key, value)

    async def _run(self, refit_id: str) -> None:
        async with self.lock:
            await self._set(refit_id, status="running")
            try:
                version, scored = await self.refit(refit_id)
            except Exception as exc:  # noqa: BLE001 - the job reports any failure
                if not isinstance(exc, NoData):
                    log.exception("refit %s failed", refit_id)
                await self._set(refit_id, status="failed", failure=str(exc) or exc.__class__.__name__,
                                finished_at=utcnow())
                return
            await self._set(refit_id, status="done", model_version=version, customers_scored=scored,
                            finished_at=utcnow())

    async def refit(self, refit_id: str) -> tuple[int, int]:
        async with self.db.reader() as session:
            refit = await repository.get_refit(session, refit_id)
        unit_days = UNIT_DAYS[refit.time_unit]
        settings = self.settings
        # A connection of its own for the bulk reads: SQLite's reader runs inline, which
        # would stall the event loop for the whole read.
        engine = create_async_engine(self.db.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                async with AsyncSession(bind=conn) as session:
                    as_of_day = await _as_of_day(session)
                    if as_of_day is None:
                        raise NoData("no purchases recorded yet: nothing to fit")
                    end_day = day_number(refit.calibration_end) if refit.calibration_end else as_of_day
                    calibration = await repository.load_calibration(session, end_day=end_day)
                    arrays = await repository.load_customers(
                        session, as_of_day=as_of_day, annual_rate=settings.discount_rate
                    )
        finally:
            await engine.dispose()

        def compute():
            fitted = fit_models(calibration, end_day=end_day, unit_days=unit_days)
            inputs = rfm_inputs(arrays, as_of_day)
            edges = {key: quintile_edges(values).tolist() for key, values in inputs.items()}
            scores = score(
                arrays, bgnbd=BGNBDParams(**fitted["bgnbd"]), gamma_gamma=GammaGammaParams(**fitted["gamma_gamma"]),
                rfm_edges=edges, unit_days=unit_days, as_of_day=as_of_day, settings=settings,
            )
            finite = scores.predicted_clv[np.isfinite(scores.predicted_clv)]
            thresholds = {
                "high_future_value": float(np.quantile(finite, 1 - settings.high_value_top)) if len(finite) else 0.0,
                "cost_absorber_purchases": float(np.quantile(arrays.purchases, 1 - settings.cost_absorber_top)),
            }
            return fitted, edges, scores, thresholds

        fitted, edges, scores, thresholds = await asyncio.to_thread(compute)
        async with self.db.reader() as session:
            benchmark_ids = [arrays.ids[i] for i in np.flatnonzero(arrays.referrals >= settings.benchmark_min_referrals)]
            referred = await repository.referred_by(session, benchmark_ids) if benchmark_ids else {}
        kinds, evidence, kind_rows = kinds_of(
            arrays, scores, high_value_threshold=thresholds["high_future_value"],
            cost_absorber_purchases=thresholds["cost_absorber_purchases"], settings=settings, referred=referred,
        )
        params = {
            **fitted, "rfm_edges": edges, "thresholds": thresholds, "as_of_day": as_of_day,
            "discount_rate": settings.discount_rate, "clv_horizon_days": settings.clv_horizon_days,
        }
        async with transaction(self.db.writer) as session:
            version = ((await repository.latest_model_version(session)) or 0) + 1
            session.add(PortfolioModel(
                version=version, time_unit=refit.time_unit, calibration_end=refit.calibration_end, params=params,
                fitted_at=utcnow(),
            ))
        at = utcnow()
        rows = score_rows(arrays, scores, kinds, evidence, version=version, at=at)
        for start in range(0, len(rows), WRITE_CHUNK):
            async with transaction(self.db.writer) as session:
                await repository.upsert_scores(session, rows[start:start + WRITE_CHUNK])
        async with transaction(self.db.writer) as session:
            await repository.replace_kinds(session, kind_rows, customer_ids=None)
            emit(session, "crm.identify.model.fitted", {
                "version": version, "time_unit": refit.time_unit, "calibration_end": refit.calibration_end,
                "customers_scored": len(rows), "fitted_at": at,
                **{key: fitted[key] for key in ("bgnbd", "pareto_nbd", "gamma_gamma")},
            })
        return version, len(rows)


async def _as_of_day(session) -> int | None:
    last = (await session.execute(select(func.max(PurchaseDay.day)))).scalar()
    if last is None:
        return None
    if isinstance(last, str):  # SQLite hands back text through a raw connection
        last = date.fromisoformat(last)
    return day_number(last)


async def schedule(runner: RefitRunner) -> None:
    """Refit every `refit_interval_s` (0 turns the schedule off), weekly time unit."""

    interval = runner.settings.refit_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await runner.request(calibration_end=None, time_unit="week")
        except Exception:  # noqa: BLE001 - a failed request is retried at the next tick
            log.exception("scheduled refit could not be requested")


async def start(runtime) -> None:
    """identify's start-up hook: fail interrupted refits, start the schedule."""

    async with transaction(runtime.db.writer) as session:
        await repository.fail_interrupted_refits(session)
    runtime.refits = RefitRunner(runtime)
    runtime.tasks.append(asyncio.create_task(schedule(runtime.refits), name="refit-schedule"))
