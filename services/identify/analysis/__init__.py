"""Customer portfolio analysis: pure functions on numpy arrays (no database, no web).

Models for expected purchases (BG/NBD, Pareto/NBD) and spend (Gamma-Gamma), lifetime
value, RFM scores and segments, and value concentration. See docs/portfolio-models.md.
"""

from .bgnbd import (
    BGNBDParams,
    bgnbd_expected_purchases,
    bgnbd_expected_purchases_new,
    bgnbd_probability_alive,
    fit_bgnbd,
)
from .clv import discounted_purchases, historic_clv, predictive_clv
from .concentration import gini, lorenz_points, top_shares
from .gamma_gamma import GammaGammaParams, fit_gamma_gamma, gamma_gamma_expected_spend
from .pareto_nbd import ParetoNBDParams, fit_pareto_nbd, pareto_nbd_expected_purchases, pareto_nbd_probability_alive
from .rfm import (
    SEGMENT_TABLE,
    SEGMENTS,
    fm_score,
    quintile_edges,
    quintile_scores,
    rfm_segment,
    rfm_segments,
    score_with_edges,
)
from .summary import DAY, WEEK, mean_repeat_spend, rfm_summary

__all__ = [
    "DAY",
    "SEGMENTS",
    "SEGMENT_TABLE",
    "WEEK",
    "BGNBDParams",
    "GammaGammaParams",
    "ParetoNBDParams",
    "bgnbd_expected_purchases",
    "bgnbd_expected_purchases_new",
    "bgnbd_probability_alive",
    "discounted_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "fm_score",
    "gamma_gamma_expected_spend",
    "gini",
    "historic_clv",
    "lorenz_points",
    "mean_repeat_spend",
    "pareto_nbd_expected_purchases",
    "pareto_nbd_probability_alive",
    "predictive_clv",
    "quintile_edges",
    "quintile_scores",
    "rfm_segment",
    "rfm_segments",
    "rfm_summary",
    "score_with_edges",
    "top_shares",
]
