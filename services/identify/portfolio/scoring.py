"""Scoring customers with a fitted model: RFM, lifetime value, probability alive, kinds.

`score()` is pure numpy over many customers at once (a refit scores a million in one
call); `rescore_customers()` is the per-transaction path, run inside the write
transaction that recorded the purchases so the scores and their
`crm.identify.customer.scored` events commit with them. Either path emits that event
only for customers whose segment, kinds or CLV band changed (`emit_scored`): what the
other services' read models hold.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import SupportsIndex

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.identify.analysis import (
    DAY,
    WEEK,
    BGNBDParams,
    GammaGammaParams,
    bgnbd_expected_purchases,
    bgnbd_probability_alive,
    gamma_gamma_expected_spend,
    mean_repeat_spend,
    predictive_clv,
    rfm_segments,
    rfm_summary,
    score_with_edges,
)
from services.identify.portfolio import repository
from services.identify.portfolio.repository import CustomerArrays
from services.identify.settings import PortfolioSettings, portfolio_settings
from shared.db.database import utcnow
from shared.events.contracts import CUSTOMER_KINDS
from shared.events.messaging import emit_many

KINDS = CUSTOMER_KINDS  # shared/events/contracts.py: other services' communities take them as a scope
IDEA_SHIPPED = "crm.value.idea.shipped"


def inspiration_rule(settings: PortfolioSettings) -> str:
    """How a customer becomes an inspiration, as the portfolio's lists explain it."""

    least = settings.inspiration_min_shipped_ideas
    return (
        f"inspiration: customers with at least {least} shipped idea{'s' if least > 1 else ''} "
        f"(value's {IDEA_SHIPPED}); the evidence names the ideas. Only scored customers (with "
        "purchases) hold kinds"
    )


UNIT_DAYS = {"day": DAY, "week": WEEK}
CLV_BANDS = ("low", "medium", "high", "top")
SCORED = "crm.identify.customer.scored"


@dataclass(frozen=True)
class Model:
    """A fitted model version as scoring needs it (from portfolio_models.params)."""

    version: int
    time_unit: str
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    rfm_edges: dict[str, list[float]]
    high_value_threshold: float
    cost_absorber_purchases: float
    as_of_day: int
    # The CLV band edges the model's scores were banded with (models fitted before the
    # bands existed: the current settings').
    clv_band_edges: tuple[float, ...] = field(default_factory=lambda: portfolio_settings().clv_band_edges)

    @property
    def unit_days(self) -> int:
        return UNIT_DAYS[self.time_unit]

    @classmethod
    def from_row(cls, row) -> Model:
        params = row.params
        return cls(
            version=row.version,
            time_unit=row.time_unit,
            bgnbd=BGNBDParams(**params["bgnbd"]),
            gamma_gamma=GammaGammaParams(**params["gamma_gamma"]),
            rfm_edges=params["rfm_edges"],
            high_value_threshold=params["thresholds"]["high_future_value"],
            cost_absorber_purchases=params["thresholds"]["cost_absorber_purchases"],
            as_of_day=params["as_of_day"],
            **({"clv_band_edges": tuple(params["clv_band_edges"])} if "clv_band_edges" in params else {}),
        )


@dataclass
class Scores:
    recency: np.ndarray
    frequency: np.ndarray
    monetary: np.ndarray
    segment: np.ndarray
    historic_clv: np.ndarray
    predicted_clv: np.ndarray
    expected_purchases: np.ndarray
    probability_alive: np.ndarray
    expected_spend: np.ndarray  # per purchase (Gamma-Gamma)
    margin_ratio: np.ndarray  # NaN where no margin data


def unit_rate(annual_rate: float, unit_days: int) -> float:
    return (1.0 + annual_rate) ** (unit_days / 365.0) - 1.0


def net_revenue(total_spend, total_margin, total_cost, settings: PortfolioSettings) -> np.ndarray:
    """Revenue net of the cost of goods: the margin where transactions gave one (NaN where
    none did), else revenue × default_margin; minus the transactions' own serving costs."""

    gross = np.where(np.isnan(total_margin), total_spend * settings.default_margin, total_margin)
    return gross - total_cost


def rfm_inputs(arrays: CustomerArrays, as_of_day: int) -> dict[str, np.ndarray]:
    return {
        "recency": as_of_day - arrays.last_day,  # days since the last purchase: lower is better
        "frequency": arrays.purchase_days,
        "monetary": arrays.total_spend,
    }


def score(
    arrays: CustomerArrays,
    *,
    bgnbd,
    gamma_gamma,
    rfm_edges,
    unit_days: int,
    as_of_day: int,
    settings: PortfolioSettings,
) -> Scores:
    # as_of_day is never before a customer's last purchase, so t_x <= T.
    x, t_x, T = rfm_summary(arrays.first_day, arrays.last_day, arrays.purchase_days, as_of_day, unit_days)
    horizon = settings.clv_horizon_days / unit_days
    mean_spend = mean_repeat_spend(arrays.total_spend, arrays.first_day_spend, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        net = net_revenue(arrays.total_spend, arrays.total_margin, arrays.total_cost, settings)
        margin_ratio = np.where(arrays.total_spend > 0, net / arrays.total_spend, np.nan)
    profit_share = np.where(np.isnan(margin_ratio), settings.default_margin, np.clip(margin_ratio, 0, 1))
    predicted = predictive_clv(
        bgnbd,
        gamma_gamma,
        x,
        t_x,
        T,
        mean_spend,
        horizon=horizon,
        discount_rate=unit_rate(settings.discount_rate, unit_days),
        margin=profit_share,
    )
    # Historic CLV: each purchase day's revenue compounded to as_of, scaled to net,
    # minus the per-customer costs, compounded from the first purchase, and the service
    # costs of the customer's tickets, each compounded from its own day.
    years_since_first = (as_of_day - arrays.first_day) / 365.0
    # A date centuries away (stored before dates were bounded) overflows to inf: null scores.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # not finite: written as null
        net_share = np.where(arrays.total_spend != 0, net / arrays.total_spend, 0.0)
        historic = (
            net_share * arrays.compounded_spend
            - arrays.customer_costs * np.power(1 + settings.discount_rate, years_since_first)
            - arrays.service_costs_at(as_of_day, settings.discount_rate)  # lifecycle's tickets
        )
    inputs = rfm_inputs(arrays, as_of_day)
    recency = score_with_edges(inputs["recency"], np.asarray(rfm_edges["recency"]), higher_is_better=False)
    frequency = score_with_edges(inputs["frequency"], np.asarray(rfm_edges["frequency"]))
    monetary = score_with_edges(inputs["monetary"], np.asarray(rfm_edges["monetary"]))
    return Scores(
        recency=recency,
        frequency=frequency,
        monetary=monetary,
        segment=rfm_segments(recency, frequency, monetary),
        historic_clv=historic,
        predicted_clv=predicted,
        expected_purchases=bgnbd_expected_purchases(bgnbd, horizon, x, t_x, T),
        probability_alive=bgnbd_probability_alive(bgnbd, x, t_x, T),
        expected_spend=gamma_gamma_expected_spend(gamma_gamma, x, mean_spend),
        margin_ratio=margin_ratio,
    )


def kinds_of(
    arrays: CustomerArrays,
    scores: Scores,
    *,
    high_value_threshold: float,
    cost_absorber_purchases: float,
    settings: PortfolioSettings,
    referred: dict[str, list[str]],
    helpful: dict[str, int] | None = None,
    shipped: dict[str, list[str]] | None = None,
) -> tuple[list[list[str]], list[dict], list[dict]]:
    """Each customer's kinds and evidence, plus the customer_kinds rows.

    `helpful`: the helpful marks of the customers with at least `benchmark_min_helpful_marks`
    (`helpful_benchmarks`); either that, enough referrals, or enough revenue of the customers
    they referred makes a benchmark customer.
    `shipped`: each customer's shipped ideas (the inspiration evidence).
    """

    high = (scores.predicted_clv >= high_value_threshold) & (scores.predicted_clv > 0)
    referring = arrays.referrals >= settings.benchmark_min_referrals
    marks = helpful_marks_array(arrays.ids, helpful or {})
    helping = marks >= settings.benchmark_min_helpful_marks
    revenue = referred_revenue_array(arrays)
    bringing = revenue >= settings.benchmark_min_referred_revenue
    benchmark = referring | helping | bringing
    absorber = (
        (arrays.purchases >= cost_absorber_purchases)
        & ~np.isnan(scores.margin_ratio)
        & (scores.margin_ratio <= settings.thin_margin)
        & ~np.isnan(arrays.total_margin)
    )
    kinds: list[list[str]] = [[] for _ in range(len(arrays))]
    evidence: list[dict] = [{} for _ in range(len(arrays))]
    rows: list[dict] = []

    def hold(index: SupportsIndex, kind: str, rank: float, proof: dict) -> None:  # numpy's ints too
        kinds[index].append(kind)
        evidence[index][kind] = proof
        rows.append({"customer_id": arrays.ids[index], "kind": kind, "rank_value": float(rank), "evidence": proof})

    for i in np.flatnonzero(high):
        hold(
            i,
            "high_future_value",
            scores.predicted_clv[i],
            {
                "predicted_clv": round(float(scores.predicted_clv[i]), 2),
                "threshold": round(high_value_threshold, 2),
                "top_share": settings.high_value_top,
                "probability_alive": round(float(scores.probability_alive[i]), 4),
                "expected_purchases": round(float(scores.expected_purchases[i]), 4),
            },
        )
    for i in np.flatnonzero(benchmark):
        hold(
            i,
            "benchmark",
            arrays.referrals[i] + marks[i],
            benchmark_evidence(arrays, i, (referring, helping, bringing), marks, referred, settings),
        )
    least = settings.inspiration_min_shipped_ideas
    inspiring = {customer: ideas for customer, ideas in (shipped or {}).items() if len(ideas) >= least}
    # A few customers among up to a million: one pass of set lookups, only when there are any.
    held = (
        [(at, inspiring[customer_id]) for at, customer_id in enumerate(arrays.ids) if customer_id in inspiring]
        if inspiring
        else []
    )
    for at, ideas in held:
        hold(
            at,
            "inspiration",
            len(ideas),
            {"shipped_ideas": len(ideas), "min_shipped_ideas": least, "ideas": ideas, "source": IDEA_SHIPPED},
        )
    for i in np.flatnonzero(absorber):
        hold(
            i,
            "cost_absorber",
            arrays.purchases[i],
            {
                "purchases": int(arrays.purchases[i]),
                "volume_threshold": float(cost_absorber_purchases),
                "top_share": settings.cost_absorber_top,
                "margin_ratio": round(float(scores.margin_ratio[i]), 4),
                "thin_margin": settings.thin_margin,
            },
        )
    return kinds, evidence, rows


def score_columns(
    arrays: CustomerArrays,
    scores: Scores,
    kinds: list[list[str]],
    evidence: list[dict],
    *,
    version: int,
) -> dict[str, list]:
    """The customer_scores columns as lists (None where a value is not finite)."""

    def clean(values: np.ndarray, digits: int) -> list[float | None]:
        rounded = np.round(values, digits).astype(object)
        rounded[~np.isfinite(values)] = None
        return rounded.tolist()

    return {
        "customer_id": arrays.ids,
        "model_version": [version] * len(arrays),
        "recency": scores.recency.astype(int).tolist(),
        "frequency": scores.frequency.astype(int).tolist(),
        "monetary": scores.monetary.astype(int).tolist(),
        "segment": scores.segment.tolist(),
        "historic_clv": clean(scores.historic_clv, 4),
        "predicted_clv": clean(scores.predicted_clv, 4),
        "expected_purchases": clean(scores.expected_purchases, 6),
        "probability_alive": clean(scores.probability_alive, 6),
        "expected_spend": clean(scores.expected_spend, 4),
        "kinds": kinds,
        "evidence": evidence,
    }


def helpful_marks_array(ids: list[str], helpful: dict[str, int]) -> np.ndarray:
    """Helpful marks per customer of `ids`, from the few customers `helpful` names (one pass,
    skipped when it names none: PostgreSQL's collation may order ids otherwise than Python,
    so no search relies on their order)."""

    marks = np.zeros(len(ids), dtype=np.int64)
    if helpful:
        for index, customer_id in enumerate(ids):
            count = helpful.get(customer_id)
            if count is not None:
                marks[index] = count
    return marks


def referred_revenue_array(arrays: CustomerArrays) -> np.ndarray:
    """What each customer's referred customers spent (zeros where arrays were made without it)."""

    revenue = arrays.referred_revenue
    return revenue if len(revenue) == len(arrays) else np.zeros(len(arrays))


def benchmark_evidence(arrays, i, rules, marks, referred, settings: PortfolioSettings) -> dict:
    """The evidence of a benchmark customer: each rule that holds, with what it counted.
    `rules`: the (referring, helping, bringing) arrays, whether each rule holds per customer."""

    referring, helping, bringing = rules
    evidence: dict = {"rules": [], "sources": []}
    if referring[i]:
        evidence["rules"].append("referrals")
        evidence["sources"].append("crm.network.referral.recorded")
        evidence.update(
            referrals=int(arrays.referrals[i]),
            min_referrals=settings.benchmark_min_referrals,
            referred=referred.get(arrays.ids[i], []),
        )
    if helping[i]:
        evidence["rules"].append("helpful_marks")
        evidence["sources"].append("crm.engage.community.helpfulness.changed")
        evidence.update(helpful_marks=int(marks[i]), min_helpful_marks=settings.benchmark_min_helpful_marks)
    if bringing[i]:
        evidence["rules"].append("referred_revenue")
        evidence["sources"].append("crm.identify.transaction.recorded")
        evidence.update(
            referred_revenue=round(float(referred_revenue_array(arrays)[i]), 2),
            min_referred_revenue=settings.benchmark_min_referred_revenue,
            referred=referred.get(arrays.ids[i], []),
        )
    return evidence


async def helpful_benchmarks(
    session: AsyncSession, settings: PortfolioSettings, customer_ids: list[str] | None = None
) -> dict[str, int]:
    """The helpful marks of the customers (of `customer_ids`, or everyone) with enough for `benchmark`."""

    return await repository.helpful_marks_at_least(session, settings.benchmark_min_helpful_marks, customer_ids)


async def referred_by_benchmarks(session: AsyncSession, arrays: CustomerArrays, settings: PortfolioSettings):
    """Whom each customer with enough referrals, or referred revenue, for `benchmark` referred (the evidence)."""

    enough = (arrays.referrals >= settings.benchmark_min_referrals) | (
        referred_revenue_array(arrays) >= settings.benchmark_min_referred_revenue
    )
    ids = [arrays.ids[i] for i in np.flatnonzero(enough)]
    return await repository.referred_by(session, ids) if ids else {}


# --- the per-transaction path -------------------------------------------------------

# The current model per database, re-read at most every MODEL_RECHECK_S (a refit in
# this process replaces it at once): the per-transaction path should not pay a query
# for a model that changes once a day.
MODEL_RECHECK_S = 5.0
_current: dict[str, tuple[float, Model | None]] = {}
# Each engine's URL as a key: rendering it was 2% of identify's CPU on the purchase path.
_keys: weakref.WeakKeyDictionary[AsyncEngine, str] = weakref.WeakKeyDictionary()


def _database_key(session: AsyncSession) -> str:
    engine = session.bind
    assert isinstance(engine, AsyncEngine), "a write session, bound to the service's engine"
    key = _keys.get(engine)
    if key is None:
        key = _keys[engine] = str(engine.url)
    return key


def forget_model(engine) -> None:
    """Called by a refit once its model is committed."""

    _current.pop(str(engine.url), None)


async def current_model(session: AsyncSession) -> Model | None:
    key = _database_key(session)
    cached = _current.get(key)
    if cached is not None and time.monotonic() - cached[0] < MODEL_RECHECK_S:
        return cached[1]
    row = await repository.latest_model(session)
    model = Model.from_row(row) if row is not None else None
    _current[key] = (time.monotonic(), model)
    return model


async def rescore_customers(session: AsyncSession, customer_ids, *, with_referrers: bool = False) -> None:
    """Re-score these customers with the current model and emit crm.identify.customer.scored.
    `with_referrers`: their purchases changed, so the customers who referred them are re-scored
    too (what their referred customers spent is benchmark evidence).

    Before the first refit there is no model: nothing is scored (the refit scores everyone).
    """

    customer_ids = sorted(set(customer_ids))
    if not customer_ids:
        return
    model = await current_model(session)
    if model is None:
        return
    if with_referrers:
        customer_ids = sorted(set(customer_ids) | await repository.referrers_of(session, customer_ids))
    settings = portfolio_settings()
    arrays = await repository.load_customers(session, customer_ids=customer_ids)
    if not len(arrays):
        return
    # Scores are as of the model's day, or later when these customers' data is newer.
    as_of_day = max(model.as_of_day, int(arrays.last_day.max()))
    arrays.compound_to(as_of_day, settings.discount_rate)
    scores = score(
        arrays,
        bgnbd=model.bgnbd,
        gamma_gamma=model.gamma_gamma,
        rfm_edges=model.rfm_edges,
        unit_days=model.unit_days,
        as_of_day=as_of_day,
        settings=settings,
    )
    referred = await referred_by_benchmarks(session, arrays, settings)
    helpful = await helpful_benchmarks(session, settings, arrays.ids)
    shipped = await repository.shipped_ideas(session, arrays.ids)
    kinds, evidence, kind_rows = kinds_of(
        arrays,
        scores,
        high_value_threshold=model.high_value_threshold,
        cost_absorber_purchases=model.cost_absorber_purchases,
        settings=settings,
        referred=referred,
        helpful=helpful,
        shipped=shipped,
    )
    columns = score_columns(arrays, scores, kinds, evidence, version=model.version)
    at = utcnow()
    previous = await repository.previous_scores(session, arrays.ids)
    await repository.write_scores(session, columns, at=at)
    # Most customers hold no kind before or after: skip the delete for them.
    changing = [arrays.ids[i] for i in np.flatnonzero(arrays.kinds_held > 0)]
    changing += [row["customer_id"] for row in kind_rows]
    if changing:
        await repository.replace_kinds(session, kind_rows, customer_ids=sorted(set(changing)))
    emit_scored(
        session,
        columns,
        clv_band_codes(scores.predicted_clv, model.clv_band_edges),
        previous,
        previous_edges=model.clv_band_edges,
        at=at,
    )


def clv_band_codes(predicted_clv, edges) -> np.ndarray:
    """Each predicted CLV's index in CLV_BANDS (below the first edge: low, from the last
    on: top); -1 where there is none (null or not finite)."""

    values = np.asarray(predicted_clv, dtype=np.float64)  # None → NaN
    codes = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.where(np.isfinite(values), codes, -1)


def _band(code) -> str | None:
    return CLV_BANDS[code] if code >= 0 else None


def emit_scored(
    session: AsyncSession,
    columns: dict[str, list],
    bands: np.ndarray,
    previous: list[tuple],
    *,
    previous_edges,
    at: datetime,
) -> int:
    """Emit crm.identify.customer.scored (bundled, emit_many) for the customers of `columns`
    whose segment, kinds or CLV band differs from their `previous` score row
    (repository.previous_scores; a customer without one was never scored: it changed).
    Returns how many were emitted.

    The comparison is array-wide: a refit compares a million customers, and most of
    them come out as they were.
    """

    ids = columns["customer_id"]
    if [row[0] for row in previous] != ids:
        by_id = {row[0]: row for row in previous}
        previous = [by_id.get(customer_id) or (customer_id, None, None, None) for customer_id in ids]
    old_segment = np.array([row[1] for row in previous], dtype=object)
    old_kinds = np.array([row[2] for row in previous], dtype=object)
    old_bands = clv_band_codes([row[3] for row in previous], previous_edges)
    new_kinds = np.array([repository.kinds_text(value) for value in columns["kinds"]], dtype=object)
    kinds_differ = old_kinds != new_kinds
    changed = (old_segment != np.array(columns["segment"], dtype=object)) | (old_bands != bands) | kinds_differ
    payloads, subjects = [], []
    new_bands, old_bands, old_segment, old_kinds = (
        bands.tolist(),
        old_bands.tolist(),
        old_segment.tolist(),
        old_kinds.tolist(),
    )
    for i in np.flatnonzero(changed).tolist():
        was_kinds = None if old_kinds[i] is None else orjson.loads(old_kinds[i])
        if (
            was_kinds == columns["kinds"][i]
            and old_segment[i] == columns["segment"][i]
            and old_bands[i] == new_bands[i]
        ):
            continue  # the same kinds written another way
        payloads.append(
            {
                **{key: columns[key][i] for key in _SCORED_COLUMNS},
                "clv_band": _band(new_bands[i]),
                "scored_at": at,
                "previous_segment": old_segment[i],
                "previous_kinds": was_kinds,
                "previous_clv_band": _band(old_bands[i]),
            }
        )
        subjects.append(ids[i])
    emit_many(session, SCORED, payloads, subjects)
    return len(payloads)


_SCORED_COLUMNS = (
    "customer_id",
    "model_version",
    "segment",
    "recency",
    "frequency",
    "monetary",
    "historic_clv",
    "predicted_clv",
    "probability_alive",
    "expected_purchases",
    "expected_spend",
    "kinds",
)
