"""How concentrated value is across customers: top-x% shares, the Lorenz curve, Gini.

Shares at fractions of customers that fall between two customers are interpolated
linearly along the cumulative curve, so the top 10% of 25 customers hold 2.5 customers'
worth. Values may be negative (profit): the top 20% can then hold more than 100% of
the total, the "whale curve". A zero total gives shares of 0.
"""

from __future__ import annotations

import numpy as np


def _cumulative_shares(values, *, descending: bool) -> np.ndarray:
    """Cumulative share of the total held by the first k customers, k = 0..n, in sorted order."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if descending:
        ordered = ordered[::-1]
    cumulative = np.concatenate(([0.0], np.cumsum(ordered)))
    total = cumulative[-1]
    return cumulative / total if total != 0 else np.zeros_like(cumulative)


def _share_at(cumulative: np.ndarray, fractions) -> np.ndarray:
    n = len(cumulative) - 1
    return np.interp(np.asarray(fractions, dtype=np.float64) * n, np.arange(n + 1), cumulative)


def top_shares(values, tops=(0.01, 0.05, 0.1, 0.2, 0.5)) -> list[tuple[float, float]]:
    """[(top, share of the total held by the top `top` fraction of customers by value), ...]."""
    if len(values) == 0:
        return [(float(top), 0.0) for top in tops]
    shares = _share_at(_cumulative_shares(values, descending=True), tops)
    return [(float(top), float(share)) for top, share in zip(tops, shares)]


def lorenz_points(values, points=21) -> list[tuple[float, float]]:
    """`points` points of the Lorenz curve: (share of customers, smallest first; their share of value)."""
    if points < 2:
        raise ValueError("a Lorenz curve needs at least 2 points")
    xs = np.linspace(0.0, 1.0, points)
    if len(values) == 0:
        return [(float(x), float(x)) for x in xs]
    ys = _share_at(_cumulative_shares(values, descending=False), xs)
    return [(float(x), float(y)) for x, y in zip(xs, ys)]


def gini(values) -> float:
    """Gini coefficient: 0 when all hold the same, (n−1)/n when one holds everything.

    G = 2 Σ i·v₍ᵢ₎ / (n Σ v) − (n+1)/n over values sorted ascending, i = 1..n.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    total = ordered.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * (ranks @ ordered) / (n * total) - (n + 1) / n)
