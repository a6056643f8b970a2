"""The portfolio views, Pareto and segments, from arrays: what a refit stores and what a
request computes when none is stored (service.py).

GET /v1/portfolio/pareto and /segments read the whole portfolio: ~1 s each over a million
customers (docs/benchmarks.md, "The console"). A refit computes both from the arrays it has
just scored (no second read of the portfolio) and stores them with its model; the endpoints
serve that row. Until a refit has stored one, and for Pareto shares other than
DEFAULT_TOPS, the answer is computed for the request from the current data (`computed_at`
null). Sums are taken over sorted values, so they do not depend on the order rows arrive
in: a stored Pareto view is the one a request would compute from the same data, bit for
bit (segments per request sum in SQL: the two may round a sum that falls exactly on a half
cent to different cents).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.identify.analysis import SEGMENTS, gini, lorenz_points, top_shares
from services.identify.analysis.rfm import rfm_segment_codes
from services.identify.portfolio.repository import CustomerArrays
from services.identify.portfolio.scoring import KINDS, Scores, net_revenue
from services.identify.settings import PortfolioSettings

DEFAULT_TOPS = (0.01, 0.05, 0.1, 0.2, 0.5)
# An answer's fields that are the stored row's columns, not its body.
STORED_COLUMNS = ("model_version", "computed_at")


def total(values: np.ndarray) -> float:
    """The sum of `values` whatever their order (sorted first)."""

    return float(np.sort(values).sum())


def segments_answer(totals: dict, kinds: dict[str, int], *, model_version: int | None) -> dict:
    """The segments view from {segment: (customers, revenue, historic CLV, predicted CLV)}
    and {kind: customers holding it}."""

    items = []
    for name in SEGMENTS:  # every segment, the empty ones too
        customers, revenue, historic, predicted = totals.get(name, (0, 0.0, 0.0, 0.0))
        items.append(
            {
                "segment": name,
                "customers": int(customers),
                "revenue": round(float(revenue), 2),
                "historic_clv": round(float(historic), 2),
                "predicted_clv": round(float(predicted), 2),
            }
        )
    return {
        "model_version": model_version,
        "customers": sum(item["customers"] for item in items),
        "segments": items,
        "kinds": {kind: int(kinds.get(kind, 0)) for kind in KINDS},
        "computed_at": None,
    }


def pareto_answer(data: np.ndarray, tops: tuple[float, ...], settings: PortfolioSettings) -> dict:
    """The Pareto view from repository.revenue_and_net's columns (revenue, margin, cost, customer costs)."""

    revenue = data[:, 0]
    profit = net_revenue(revenue, data[:, 1], data[:, 2], settings) - data[:, 3]
    n = len(revenue)
    revenue_shares = dict(top_shares(revenue, tops)) if n else dict.fromkeys(tops, 0.0)
    # Profit shares rank customers by profit; with loss-makers the top can hold over 100%.
    profit_shares = dict(top_shares(profit, tops)) if n else dict.fromkeys(tops, 0.0)
    return {
        "customers": n,
        "revenue": round(total(revenue), 2),
        "profit": round(total(profit), 2),
        "shares": [
            {
                "top": top,
                "customers": int(np.ceil(top * n)),
                "revenue_share": round(revenue_shares[top], 6),
                "profit_share": round(profit_shares[top], 6),
            }
            for top in tops
        ],
        "gini": round(gini(revenue), 6) if n else 0.0,
        "profit_gini": round(gini(profit), 6) if n else 0.0,
        "lorenz": [(round(x, 6), round(y, 6)) for x, y in lorenz_points(revenue)] if n else [(0.0, 0.0), (1.0, 1.0)],
        "model_version": None,
        "computed_at": None,
    }


def refit_views(
    arrays: CustomerArrays, scores: Scores, kind_rows: list[dict], *, settings: PortfolioSettings
) -> dict[str, dict]:
    """{view name: stored body} from what a refit scored: every customer with purchases
    (the rows revenue_and_net reads) and their scores as written (CLVs to 4 places, null
    where not finite, as segment_totals sums them)."""

    def written(values: np.ndarray) -> np.ndarray:
        rounded = np.round(values, 4)
        return np.where(np.isfinite(rounded), rounded, 0.0)

    historic, predicted = written(scores.historic_clv), written(scores.predicted_clv)
    # By code, not name: comparing a million names eleven times held the GIL for ~0.2 s.
    codes = rfm_segment_codes(scores.recency, scores.frequency, scores.monetary)
    totals = {}
    for code, name in enumerate(SEGMENTS):
        held = codes == code
        count = int(held.sum())
        if count:
            totals[name] = (
                count,
                total(arrays.total_spend[held]),
                total(historic[held]),
                total(predicted[held]),
            )
    data = np.column_stack([arrays.total_spend, arrays.total_margin, arrays.total_cost, arrays.customer_costs])
    answers = {
        "segments": segments_answer(totals, Counter(row["kind"] for row in kind_rows), model_version=None),
        "pareto": pareto_answer(data.reshape(-1, 4), DEFAULT_TOPS, settings),
    }
    return {
        name: {key: value for key, value in answer.items() if key not in STORED_COLUMNS}
        for name, answer in answers.items()
    }
