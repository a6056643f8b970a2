"""BG/NBD, Pareto/NBD and Gamma-Gamma reproduce the published CDNOW estimates.

Calibration period: weeks 1–39 of CDNOW_sample.txt (1997-01-01 .. 1997-09-30), time in
weeks, repeat purchases counted per purchase day (see examples/cdnow/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from services.identify.analysis import (
    WEEK,
    bgnbd_expected_purchases,
    bgnbd_expected_purchases_new,
    bgnbd_probability_alive,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    gamma_gamma_expected_spend,
    pareto_nbd_expected_purchases,
    pareto_nbd_probability_alive,
    rfm_summary,
)
from tests.support import cdnow_dir

CDNOW = cdnow_dir()
CALIBRATION_END = np.datetime64("1997-09-30", "D").astype(np.int64)

BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO_NBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def assert_3_significant(params, published):
    for name, value in published.items():
        fitted = getattr(params, name)
        assert float(f"{fitted:.3g}") == float(f"{value:.3g}"), f"{name}: fitted {fitted}, published {value}"


@pytest.fixture(scope="module")
def summary_csv():
    data = np.genfromtxt(CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True)
    return data["x"], data["t_x"], data["T"], data["zbar"]


def day_numbers(yyyymmdd: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of dates written as the integer YYYYMMDD."""
    months = (yyyymmdd // 10000 - 1970) * 12 + (yyyymmdd // 100 % 100 - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + yyyymmdd % 100 - 1


def raw_calibration_summary():
    """(customer ids, x, t_x, T, mean repeat spend) from the raw transactions, weeks 1–39."""
    raw = np.loadtxt(CDNOW / "CDNOW_sample.txt")
    customer = raw[:, 1].astype(np.int64)  # sample_id: the summary CSV's ID
    days = day_numbers(raw[:, 2].astype(np.int64))
    spend = raw[:, 4].astype(np.float64)
    keep = days <= CALIBRATION_END
    customer, days, spend = customer[keep], days[keep], spend[keep]
    ids, index = np.unique(customer, return_inverse=True)
    n = len(ids)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, index, days)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, index, days)
    customer_days = np.unique(index * 100_000 + (days - days.min()))  # one per (customer, purchase day)
    purchase_days = np.bincount(customer_days // 100_000, minlength=n)
    total = np.bincount(index, weights=spend, minlength=n)
    first_day_spend = np.bincount(index, weights=np.where(days == first[index], spend, 0.0), minlength=n)
    x, t_x, T = rfm_summary(first, last, purchase_days, CALIBRATION_END, WEEK)
    mean_repeat_spend = np.divide(total - first_day_spend, x, out=np.zeros(n), where=x > 0)
    return ids, x, t_x, T, mean_repeat_spend


@pytest.fixture(scope="module")
def summary_raw():
    return raw_calibration_summary()


def test_raw_transactions_summarise_to_the_published_summary(summary_csv, summary_raw):
    ids, x, t_x, T, spend = summary_raw
    csv_x, csv_t_x, csv_T, csv_zbar = summary_csv
    assert day_numbers(np.array([19970101, 19970930])).tolist() == [
        np.datetime64("1997-01-01", "D").astype(np.int64),
        CALIBRATION_END,
    ]
    assert len(ids) == 2357 and (ids == np.arange(1, 2358)).all()
    assert (x == csv_x).all() and int((x > 0).sum()) == 946
    # T ends at the calibration end date itself (day 272 after 1997-01-01): 272/7 = 38.86 weeks
    assert np.round(T, 2).tolist() == csv_T.tolist() and csv_T[0] == 38.86
    assert (np.round(t_x, 2) == csv_t_x).all()
    assert np.abs(spend - csv_zbar).max() <= 0.005 + 1e-9  # the CSV rounds to cents


def test_bgnbd_from_the_summary(summary_csv):
    x, t_x, T, _ = summary_csv
    params = fit_bgnbd(x, t_x, T)
    assert_3_significant(params, BGNBD)
    assert params.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert bgnbd_expected_purchases(params, 39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=5e-4)


def test_bgnbd_from_raw_transactions(summary_raw):
    _, x, t_x, T, _ = summary_raw
    params = fit_bgnbd(x, t_x, T)
    assert_3_significant(params, BGNBD)
    assert params.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_pareto_nbd_from_the_summary_and_from_raw_transactions(summary_csv, summary_raw):
    for x, t_x, T in (summary_csv[:3], summary_raw[1:4]):
        params = fit_pareto_nbd(x, t_x, T)
        assert_3_significant(params, PARETO_NBD)
        assert params.log_likelihood == pytest.approx(-9595.0, abs=0.05)


def test_gamma_gamma_from_the_summary_and_from_raw_transactions(summary_csv, summary_raw):
    csv_x, _, _, zbar = summary_csv
    _, x, _, _, spend = summary_raw
    for params in (fit_gamma_gamma(csv_x, zbar), fit_gamma_gamma(x, spend)):
        assert_3_significant(params, GAMMA_GAMMA)


def test_gamma_gamma_leaves_out_one_time_buyers_and_zero_spend(summary_csv):
    x, _, _, zbar = summary_csv
    repeat = (x > 0) & (zbar > 0)
    assert fit_gamma_gamma(x, zbar) == fit_gamma_gamma(x[repeat], zbar[repeat])


def test_gamma_gamma_expected_spend_shrinks_to_the_population_mean():
    params = fit_gamma_gamma(*[np.array(v, dtype=float) for v in ([1, 2, 3, 4, 5, 1, 2], [10, 20, 35, 15, 40, 25, 30])])
    population = params.p * params.gamma / (params.q - 1)
    few, many = gamma_gamma_expected_spend(params, [1, 50], [100.0, 100.0])
    assert gamma_gamma_expected_spend(params, [0], [0.0])[0] == pytest.approx(population)
    assert population < few < many < 100.0  # more purchases, more weight on the customer's own mean


def test_probability_alive_and_expectations(summary_csv):
    x, t_x, T, _ = summary_csv
    bgnbd, pareto = fit_bgnbd(x, t_x, T), fit_pareto_nbd(x, t_x, T)
    # BG/NBD: a customer who never bought again cannot have dropped out (dropout follows a purchase)
    assert bgnbd_probability_alive(bgnbd, [0], [0.0], [38.86])[0] == 1.0
    # the same purchases, the last one longer ago: less likely alive, fewer purchases expected
    recent, stale = bgnbd_probability_alive(bgnbd, [3, 3], [38.0, 10.0], [38.86, 38.86])
    assert 0 < stale < recent < 1
    for alive, expected in (
        (pareto_nbd_probability_alive, pareto_nbd_expected_purchases),
        (bgnbd_probability_alive, bgnbd_expected_purchases),
    ):
        params = pareto if alive is pareto_nbd_probability_alive else bgnbd
        p = alive(params, x, t_x, T)
        assert ((p > 0) & (p <= 1)).all()
        e = expected(params, 39, x, t_x, T)
        assert (e >= 0).all() and np.isfinite(e).all()
        assert (expected(params, 78, x, t_x, T) > e).all()
    # a new customer's expected repeat purchases grow with time, from 0
    new = bgnbd_expected_purchases_new(bgnbd, [0.0, 39.0, 78.0])
    assert new[0] == 0 and 0 < new[1] < new[2]
    # conditional expectation at T = 0 with no purchases is the unconditional one
    assert bgnbd_expected_purchases(bgnbd, 39, [0], [0.0], [0.0])[0] == pytest.approx(new[1])


def test_pareto_nbd_stays_finite_for_heavy_buyers():
    from services.identify.analysis import ParetoNBDParams

    for alpha, beta in ((2.0, 40.0), (40.0, 2.0)):
        params = ParetoNBDParams(r=0.5, alpha=alpha, s=0.6, beta=beta, log_likelihood=0.0)
        p = pareto_nbd_probability_alive(params, [500.0, 500.0], [100.0, 50.0], [100.0, 100.0])
        assert np.isfinite(p).all() and p[0] == pytest.approx(1.0) and p[1] < 1e-6


def test_fits_refuse_data_without_repeat_buyers():
    with pytest.raises(ValueError):
        fit_bgnbd([0.0, 0.0], [0.0, 0.0], [5.0, 3.0])
    with pytest.raises(ValueError):
        fit_pareto_nbd([0.0], [0.0], [5.0])
    with pytest.raises(ValueError):
        fit_gamma_gamma([0.0, 0.0], [0.0, 0.0])
