"""Top shares, Lorenz curve and Gini coefficient."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.identify.analysis import gini, lorenz_points, top_shares


def test_top_shares_of_a_known_vector():
    values = np.array([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], dtype=float)  # 55 in all
    shares = dict(top_shares(values, tops=(0.1, 0.2, 0.5, 1.0)))
    assert shares == pytest.approx({0.1: 10 / 55, 0.2: 19 / 55, 0.5: 40 / 55, 1.0: 1.0})
    # the 80/20 rule, measured: 20 of 100 customers hold 80%
    pareto = np.array([4.0] * 20 + [0.25] * 80)
    assert dict(top_shares(pareto))[0.2] == pytest.approx(0.8)
    assert [top for top, _ in top_shares(pareto)] == [0.01, 0.05, 0.1, 0.2, 0.5]


def test_top_shares_interpolate_between_customers_and_allow_losses():
    assert dict(top_shares([3.0, 1.0], tops=(0.25,)))[0.25] == pytest.approx(0.375)  # half of the top customer
    # profit with loss-making customers: the top half earn more than all of it
    assert dict(top_shares([30.0, 10.0, -5.0, -15.0], tops=(0.5,)))[0.5] == pytest.approx(40 / 20)
    assert top_shares([], tops=(0.2,)) == [(0.2, 0.0)]
    assert top_shares([0.0, 0.0], tops=(0.2,)) == [(0.2, 0.0)]


def test_lorenz_points():
    points = lorenz_points([1.0, 1.0, 1.0, 1.0], points=5)
    assert points == [(0.0, 0.0), (0.25, 0.25), (0.5, 0.5), (0.75, 0.75), (1.0, 1.0)]
    unequal = lorenz_points([0.0, 0.0, 0.0, 10.0], points=5)
    assert unequal == [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.75, 0.0), (1.0, 1.0)]
    curve = lorenz_points(np.random.default_rng(3).pareto(1.5, 1000))
    assert len(curve) == 21 and curve[0] == (0.0, 0.0) and curve[-1] == pytest.approx((1.0, 1.0))
    ys = [y for _, y in curve]
    assert all(b >= a for a, b in itertools.pairwise(ys)) and all(y <= x for x, y in curve)


def test_gini():
    assert gini(np.full(10, 7.0)) == pytest.approx(0.0, abs=1e-12)
    for n in (2, 5, 100):
        assert gini([0.0] * (n - 1) + [42.0]) == pytest.approx((n - 1) / n)
    assert gini([1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.25)  # mean absolute difference / (2·mean)
    assert gini([]) == 0.0
