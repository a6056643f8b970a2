"""Predictive and historic customer lifetime value."""

from __future__ import annotations

import numpy as np
import pytest

from services.identify.analysis import (
    BGNBDParams,
    GammaGammaParams,
    ParetoNBDParams,
    bgnbd_expected_purchases,
    gamma_gamma_expected_spend,
    historic_clv,
    pareto_nbd_expected_purchases,
    predictive_clv,
)

# the published CDNOW estimates (weeks)
BGNBD = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=-9582.4)
PARETO = ParetoNBDParams(r=0.553, alpha=10.578, s=0.606, beta=11.669, log_likelihood=-9595.0)
SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)

X = np.array([0.0, 2.0, 2.0, 7.0, 1.0])
T_X = np.array([0.0, 30.43, 5.0, 37.0, 1.71])
T = np.array([38.86, 38.86, 38.86, 38.86, 38.86])
MEAN_SPEND = np.array([0.0, 22.35, 22.35, 40.0, 11.77])


@pytest.mark.parametrize(
    ("model", "expected_purchases"), [(BGNBD, bgnbd_expected_purchases), (PARETO, pareto_nbd_expected_purchases)]
)
def test_undiscounted_clv_is_expected_purchases_times_expected_spend(model, expected_purchases):
    clv = predictive_clv(model, SPEND, X, T_X, T, MEAN_SPEND, horizon=39, discount_rate=0.0)
    expected = expected_purchases(model, 39, X, T_X, T) * gamma_gamma_expected_spend(SPEND, X, MEAN_SPEND)
    assert clv == pytest.approx(expected, rel=1e-9)


def test_clv_of_the_published_customer():
    clv = predictive_clv(BGNBD, SPEND, X, T_X, T, MEAN_SPEND, horizon=39, discount_rate=0.0)
    # the published customer: 1.226 purchases expected in weeks 40-78
    assert clv[1] / gamma_gamma_expected_spend(SPEND, [2], [22.35])[0] == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize("model", [BGNBD, PARETO])
def test_clv_grows_with_the_horizon_and_falls_with_the_discount_rate(model):
    def clv(horizon, rate, **kw):
        return predictive_clv(model, SPEND, X, T_X, T, MEAN_SPEND, horizon=horizon, discount_rate=rate, **kw)

    short, long = clv(13, 0.002), clv(52, 0.002)
    assert (long > short).all() and (short > 0).all()
    assert (clv(52, 0.01) < long).all()
    assert clv(52, 0.002, margin=0.3) == pytest.approx(long * 0.3)
    assert clv(52, 0.002, margin=np.array([1.0, 0.5, 0.5, 0.1, 1.0])) == pytest.approx(long * [1.0, 0.5, 0.5, 0.1, 1.0])
    # a coarser grid (12 steps over the year) discounts slightly differently but close
    assert clv(52, 0.002, steps=12) == pytest.approx(long, rel=0.01)
    # recent buyers are worth more than customers with the same purchases who went quiet long ago
    assert long[1] > long[2]


def test_discounting_one_step_matches_a_hand_computation():
    rate = 0.05
    clv = predictive_clv(BGNBD, SPEND, X[1:2], T_X[1:2], T[1:2], MEAN_SPEND[1:2], horizon=2, discount_rate=rate)[0]
    by_1, by_2 = bgnbd_expected_purchases(BGNBD, np.array([1.0, 2.0]), X[1], T_X[1], T[1])
    spend = gamma_gamma_expected_spend(SPEND, X[1:2], MEAN_SPEND[1:2])[0]
    assert clv == pytest.approx((by_1 / (1 + rate) + (by_2 - by_1) / (1 + rate) ** 2) * spend)


def test_clv_refuses_a_meaningless_horizon_or_rate():
    with pytest.raises(ValueError):
        predictive_clv(BGNBD, SPEND, X, T_X, T, MEAN_SPEND, horizon=0, discount_rate=0.01)
    with pytest.raises(ValueError):
        predictive_clv(BGNBD, SPEND, X, T_X, T, MEAN_SPEND, horizon=52, discount_rate=-1.0)


def test_historic_clv_compounds_past_cash_flows_to_today():
    assert historic_clv([100.0], [0], 0.1) == pytest.approx(100.0)
    assert historic_clv([100.0, -20.0, 50.0], [2, 1, 0], 0.1) == pytest.approx(100 * 1.21 - 20 * 1.1 + 50)
    assert historic_clv([100.0, 100.0], [3, 3], 0.0) == pytest.approx(200.0)
    assert historic_clv([], [], 0.1) == 0.0
    with pytest.raises(ValueError):
        historic_clv([10.0], [-1], 0.1)
