"""RFM summaries, quintile scores and the segment table."""

from __future__ import annotations

import numpy as np
import pytest

from services.identify.analysis import (
    DAY,
    SEGMENT_TABLE,
    SEGMENTS,
    WEEK,
    fm_score,
    quintile_edges,
    quintile_scores,
    rfm_segment,
    rfm_segments,
    rfm_summary,
    score_with_edges,
)


def test_rfm_summary_counts_purchase_days_and_measures_in_the_time_unit():
    # first on day 100; 3 purchase days, the last on day 114; end on day 128
    x, t_x, T = rfm_summary(np.array([100, 120]), np.array([114, 120]), np.array([3, 1]), 128, WEEK)
    assert x.tolist() == [2.0, 0.0]
    assert t_x.tolist() == [2.0, 0.0] and T.tolist() == [4.0, 8 / 7]
    x, t_x, T = rfm_summary(np.array([100]), np.array([114]), np.array([3]), 128, DAY)
    assert (x.tolist(), t_x.tolist(), T.tolist()) == ([2.0], [14.0], [28.0])
    with pytest.raises(ValueError):
        rfm_summary(np.array([100]), np.array([114]), np.array([3]), 128, 30)


def test_quintiles_of_distinct_values_are_equal_groups():
    values = np.arange(1, 11)
    assert quintile_scores(values).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # recency in days since the last purchase: fewer is better
    assert quintile_scores(values, higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    shuffled = np.array([7, 3, 10, 1, 5])
    assert quintile_scores(shuffled).tolist() == [4, 2, 5, 1, 3]


def test_equal_values_get_equal_scores():
    # most customers bought once: all of them score the same, whatever their order
    frequency = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 8])
    scores = quintile_scores(frequency)
    assert set(scores[:6]) == {1}
    assert scores.tolist() == quintile_scores(frequency[::-1])[::-1].tolist()
    assert scores.tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    assert quintile_scores(np.full(7, 3.5)).tolist() == [1] * 7


def test_one_customer_scored_later_against_stored_edges_matches_the_fit():
    rng = np.random.default_rng(7)
    monetary = np.round(rng.gamma(2.0, 40.0, size=1000), 2)
    edges = quintile_edges(monetary)
    assert len(edges) == 4 and (np.diff(edges) >= 0).all()
    whole = quintile_scores(monetary)
    one_by_one = [int(score_with_edges([value], edges)[0]) for value in monetary[:50]]
    assert one_by_one == whole[:50].tolist()
    assert np.bincount(whole, minlength=6)[1:].tolist() == [200] * 5
    # beyond the fitted range: still 1..5
    assert score_with_edges([-1.0, 1e9], edges).tolist() == [1, 5]
    assert score_with_edges([-1.0, 1e9], edges, higher_is_better=False).tolist() == [5, 1]


def test_a_value_on_a_breakpoint_takes_the_worse_score():
    edges = np.array([10.0, 20.0, 30.0, 40.0])
    assert score_with_edges([10.0, 10.5, 40.0], edges).tolist() == [1, 2, 4]
    assert score_with_edges([10.0, 9.5, 40.0], edges, higher_is_better=False).tolist() == [4, 5, 1]


def test_segment_table_covers_every_score_and_every_segment():
    assert sorted({name for row in SEGMENT_TABLE.values() for name in row}) == sorted(SEGMENTS)
    assert len(SEGMENTS) == 11
    r, f, m = np.meshgrid(np.arange(1, 6), np.arange(1, 6), np.arange(1, 6), indexing="ij")
    names = rfm_segments(r.ravel(), f.ravel(), m.ravel())
    assert set(names) == set(SEGMENTS)
    assert names.tolist() == [rfm_segment(int(a), int(b), int(c)) for a, b, c in zip(r.ravel(), f.ravel(), m.ravel())]


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, "champions"),
        (4, 4, 3, "champions"),
        (5, 1, 1, "new_customers"),
        (5, 2, 3, "potential_loyalists"),
        (4, 3, 3, "loyal"),
        (3, 5, 4, "loyal"),
        (4, 1, 1, "promising"),
        (3, 3, 3, "need_attention"),
        (3, 2, 1, "about_to_sleep"),
        (2, 3, 3, "at_risk"),
        (1, 5, 5, "cannot_lose"),
        (2, 5, 5, "cannot_lose"),
        (2, 1, 1, "hibernating"),
        (1, 2, 2, "hibernating"),
        (1, 1, 1, "lost"),
    ],
)
def test_named_segments(r, f, m, segment):
    assert rfm_segment(r, f, m) == segment


def test_fm_rounds_halves_up_and_bad_scores_are_refused():
    assert fm_score(np.array([1, 4, 5]), np.array([2, 4, 4])).tolist() == [2, 4, 5]
    for bad in ((0, 3, 3), (3, 6, 3), (3, 3, 2.5)):
        with pytest.raises(ValueError):
            rfm_segment(*bad)
