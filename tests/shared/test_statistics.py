"""shared/statistics.py against values computed independently (by hand and with scipy on samples)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from shared import statistics as st


def test_net_promoter_score_by_hand():
    # 10 answers: 5 promoters (9-10), 2 passives (7-8), 3 detractors (0-6): NPS = 100 * (0.5 - 0.3) = 20.
    estimate = st.net_promoter_score(5, 2, 3)
    assert estimate.value == pytest.approx(20.0)
    # Var = (0.5 + 0.3 - 0.2**2) / 10 = 0.076; se = 100 * sqrt(0.076) = 27.568...; 1.959964 * se = 54.032...
    half = 1.959964 * 100 * math.sqrt(0.076)
    assert estimate.low == pytest.approx(20 - half, abs=1e-3)
    assert estimate.high == pytest.approx(20 + half, abs=1e-3)
    assert estimate.n == 10


def test_net_promoter_score_all_promoters_has_no_made_up_width():
    estimate = st.net_promoter_score(4, 0, 0)
    assert (estimate.value, estimate.low, estimate.high) == (100.0, None, None)
    assert st.net_promoter_score(0, 0, 0).value is None


def test_mean_matches_scipy_t_interval():
    values = [1, 2, 2, 3, 4, 5, 5, 5, 4, 3]
    estimate = st.mean(st.Summary.of(values))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 10, scale=stats.sem(values))
    assert estimate.value == pytest.approx(3.4)
    assert (estimate.low, estimate.high) == (pytest.approx(low), pytest.approx(high))


def test_summary_from_sums_is_the_sample_variance():
    values = [3.0, 7.0, 7.0, 19.0]
    summary = st.Summary.from_sums(4, sum(values), sum(v * v for v in values))
    assert summary.mean == pytest.approx(9.0)
    assert summary.variance == pytest.approx(stats.tvar(values))


def test_welch_difference_matches_scipy():
    a = [12.0, 0.0, 0.0, 30.5, 0.0, 8.25, 0.0, 0.0, 41.0, 0.0, 5.0]
    b = [0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 22.0, 0.0]
    estimate = st.welch_difference(st.Summary.of(a), st.Summary.of(b))
    result = stats.ttest_ind(a, b, equal_var=False)
    low, high = result.confidence_interval(0.95)
    assert estimate.value == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert (estimate.low, estimate.high) == (pytest.approx(low), pytest.approx(high))


def test_proportion_difference_by_hand():
    # 30 of 200 against 10 of 100: 0.15 - 0.10 = 0.05; se = sqrt(.15*.85/200 + .1*.9/100) = 0.0391152...
    estimate = st.proportion_difference(30, 200, 10, 100)
    se = math.sqrt(0.15 * 0.85 / 200 + 0.1 * 0.9 / 100)
    assert estimate.value == pytest.approx(0.05)
    assert estimate.low == pytest.approx(0.05 - 1.959964 * se, abs=1e-6)
    assert estimate.high == pytest.approx(0.05 + 1.959964 * se, abs=1e-6)
    assert st.proportion_difference(1, 10, 0, 0).value is None


def test_proportion_wilson_interval_matches_scipy():
    estimate = st.proportion(7, 40)
    ci = stats.binomtest(7, 40).proportion_ci(0.95, method="wilson")
    assert estimate.value == pytest.approx(7 / 40)
    assert (estimate.low, estimate.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_beta_binomial_weak_prior():
    posterior = st.beta_binomial(3, 10, prior_mean=0.05, prior_strength=2)
    # Beta(0.1 + 3, 1.9 + 7): mean 3.1 / 12
    assert (posterior.alpha, posterior.beta) == (pytest.approx(3.1), pytest.approx(8.9))
    assert posterior.mean == pytest.approx(3.1 / 12)
    low, high = posterior.interval()
    assert (low, high) == (
        pytest.approx(stats.beta.ppf(0.025, 3.1, 8.9)),
        pytest.approx(stats.beta.ppf(0.975, 3.1, 8.9)),
    )
    # No data: the prior's mean.
    assert st.beta_binomial(0, 0).mean == pytest.approx(0.05)


@pytest.mark.parametrize("args", [(5, 3, 1, 1), (-1, 3, 1, 1), (1, 3, 2, 1)])
def test_impossible_counts_are_refused(args):
    with pytest.raises(ValueError):
        st.proportion_difference(*args)


def test_least_squares_line_against_scipy():
    points = [(5.0, 7.0), (8.0, 8.0), (3.0, 14 / 3), (6.5, 6.1)]
    line = st.least_squares_line(points)
    expected = stats.linregress([x for x, _ in points], [y for _, y in points])
    assert line is not None and line.points == 4
    assert (line.slope, line.intercept) == (pytest.approx(expected.slope), pytest.approx(expected.intercept))
    assert line.at(4.0) == pytest.approx(expected.intercept + 4.0 * expected.slope)


def test_least_squares_line_needs_two_points_and_two_prices():
    assert st.least_squares_line([]) is None
    assert st.least_squares_line([(5.0, 7.0)]) is None
    assert st.least_squares_line([(5.0, 7.0), (5.0, 8.0)]) is None
