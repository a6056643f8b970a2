"""RFM scores 1–5 by quintile and the named segments they fall into.

Convention: the breakpoints are the 20/40/60/80th percentiles of the values (linear
interpolation, `np.quantile`'s default). A value scores 1 + the number of breakpoints it
is better than, so equal values always get the same score, however many there are, and a
value exactly on a breakpoint takes the lower (worse) score. With heavy ties (most
customers of a store buy once) the five groups are therefore not of equal size: that is
the honest answer, a tie broken by row order would not be. Scoring one customer later
against the stored breakpoints (`score_with_edges`) gives the same score the whole-base
scoring gave.
"""

from __future__ import annotations

import numpy as np

from shared.events.contracts import RFM_SEGMENTS

QUANTILES = (0.2, 0.4, 0.6, 0.8)

# The segment names, as other services read them in crm.identify.customer.scored (engage's
# communities take them as a scope).
SEGMENTS: tuple[str, ...] = RFM_SEGMENTS

# Rows: recency score 5 (bought most recently) down to 1; columns: FM score 1..5.
SEGMENT_TABLE: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new_customers", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "loyal", "champions", "champions"),
    3: ("promising", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "about_to_sleep", "at_risk", "at_risk", "cannot_lose"),
    1: ("lost", "hibernating", "at_risk", "cannot_lose", "cannot_lose"),
}
_TABLE_INDEX = np.array([[SEGMENTS.index(SEGMENT_TABLE[r][fm]) for fm in range(5)] for r in range(1, 6)])


def quintile_edges(values) -> np.ndarray:
    """The four breakpoints (20/40/60/80th percentiles) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to take quintiles of")
    return np.quantile(values, QUANTILES)


def score_with_edges(values, edges, higher_is_better=True) -> np.ndarray:
    """Scores 1..5 of `values` against breakpoints from `quintile_edges` (5 is best)."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if higher_is_better:
        return 1 + np.searchsorted(edges, values, side="left")  # breakpoints strictly below
    return 5 - np.searchsorted(edges, values, side="right")  # 1 + breakpoints strictly above


def quintile_scores(values, *, higher_is_better=True) -> np.ndarray:
    """Scores 1..5 by quintile of `values` (5 is best; see the module doc for ties)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    return score_with_edges(values, quintile_edges(values), higher_is_better)


def fm_score(frequency, monetary):
    """The combined F(M) score: the mean of F and M, halves rounded up."""
    return (np.asarray(frequency) + np.asarray(monetary) + 1) // 2


def _checked(name, scores) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.size and (not np.issubdtype(scores.dtype, np.integer) or scores.min() < 1 or scores.max() > 5):
        raise ValueError(f"{name} scores must be integers from 1 to 5")
    return scores


def rfm_segment_codes(recency, frequency, monetary) -> np.ndarray:
    """Each segment's index in SEGMENTS for arrays of R, F and M scores (1..5)."""
    r = _checked("recency", recency)
    fm = fm_score(_checked("frequency", frequency), _checked("monetary", monetary))
    return _TABLE_INDEX[r - 1, fm - 1]


def rfm_segments(recency, frequency, monetary) -> np.ndarray:
    """Segment names for arrays of R, F and M scores (1..5), by `SEGMENT_TABLE` on R and F(M)."""
    return np.array(SEGMENTS, dtype=object)[rfm_segment_codes(recency, frequency, monetary)]


def rfm_segment(recency, frequency, monetary) -> str:
    """The segment name of one customer's R, F and M scores (1..5)."""
    return str(rfm_segments(np.array([recency]), np.array([frequency]), np.array([monetary]))[0])
