"""Customer lifetime value: historic (what the customer has been worth, in today's money)
and predictive (the discounted value of the purchases the models expect)."""

from __future__ import annotations

import math

import numpy as np

from ._fitting import as_arrays
from .bgnbd import BGNBDParams, bgnbd_discounted_purchases
from .gamma_gamma import GammaGammaParams, gamma_gamma_expected_spend
from .pareto_nbd import ParetoNBDParams, pareto_nbd_discounted_purchases


def discounted_purchases(purchases: BGNBDParams | ParetoNBDParams, x, t_x, T, *, horizon, discount_rate, steps=None):
    """Σₖ (E[purchases by tₖ] − E[purchases by tₖ₋₁]) / (1 + rate)^tₖ over tₖ = k·horizon/steps, k = 1..steps.

    `steps` defaults to one per time unit (52 for a year in weeks).
    """
    if horizon <= 0:
        raise ValueError("horizon must be positive")
    if discount_rate <= -1:
        raise ValueError("discount_rate must be above -1")
    steps = int(steps) if steps else max(1, math.ceil(horizon))
    times = np.linspace(0.0, horizon, steps + 1)[1:]
    discount = (1.0 + discount_rate) ** -times
    if isinstance(purchases, ParetoNBDParams):
        return pareto_nbd_discounted_purchases(purchases, x, t_x, T, times, discount)
    return bgnbd_discounted_purchases(purchases, x, t_x, T, times, discount)


def predictive_clv(
    bgnbd, gamma_gamma: GammaGammaParams, x, t_x, T, mean_spend, *, horizon, discount_rate, margin=1.0, steps=None
) -> np.ndarray:
    """Discounted expected value of each customer's purchases over the next `horizon` time units.

    Σₖ (E[purchases by k] − E[purchases by k−1]) · E[spend] · margin / (1 + discount_rate)^k,
    with E[spend] from Gamma-Gamma and E[purchases] from `bgnbd` (BGNBDParams, or
    ParetoNBDParams for the Pareto/NBD); `discount_rate` is per time unit, `margin` a
    scalar or one per customer.
    """
    x, t_x, T = as_arrays(x, t_x, T)
    purchases = discounted_purchases(bgnbd, x, t_x, T, horizon=horizon, discount_rate=discount_rate, steps=steps)
    return purchases * gamma_gamma_expected_spend(gamma_gamma, x, mean_spend) * np.asarray(margin, dtype=np.float64)


def historic_clv(net_by_period, periods_ago, discount_rate) -> float:
    """Past net cash flows compounded to today: Σ net · (1 + rate)^periods_ago.

    `net_by_period` is revenue minus the costs of acquiring, selling to and serving the
    customer in each past period; `periods_ago` how many time units before today it fell
    (0 = the current period); `discount_rate` per time unit.
    """
    net, ago = as_arrays(net_by_period, periods_ago)
    if np.any(ago < 0):
        raise ValueError("periods_ago must not be negative")
    return float(np.sum(net * (1.0 + discount_rate) ** ago))
