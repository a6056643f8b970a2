"""Per-customer (x, t_x, T) summaries in the model's time unit."""

from __future__ import annotations

import numpy as np

DAY = 1
WEEK = 7


def rfm_summary(first_day, last_day, purchase_days, end_day, unit_days) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) in time units of `unit_days` days from integer day numbers (days since 1970-01-01, UTC).

    One purchase day is one purchase event, so x = purchase_days - 1 repeat purchases.
    t_x and T are measured from the first purchase day to the last purchase day and to
    `end_day` (the calibration end date itself: T = 38.86 weeks for a customer who first
    bought on 1997-01-01 with end_day 1997-09-30, as the published CDNOW summary has it).
    The caller leaves out customers whose first purchase is after end_day.
    """
    if unit_days not in (DAY, WEEK):
        raise ValueError(f"unit_days must be 1 (day) or 7 (week), not {unit_days!r}")
    first = np.asarray(first_day, dtype=np.int64)
    x = np.asarray(purchase_days, dtype=np.float64) - 1.0
    t_x = (np.asarray(last_day, dtype=np.int64) - first) / unit_days
    T = (np.asarray(end_day, dtype=np.int64) - first) / unit_days
    return x, t_x.astype(np.float64), T.astype(np.float64)


def mean_repeat_spend(total_spend, first_day_spend, x) -> np.ndarray:
    """Mean spend per repeat purchase day, (total − first day's spend) / x; 0 where x = 0.

    The first purchase day is left out, as the Gamma-Gamma model is fitted on repeat
    purchases (Fader & Hardie's note 025)."""
    x = np.asarray(x, dtype=np.float64)
    repeat = np.asarray(total_spend, dtype=np.float64) - np.asarray(first_day_spend, dtype=np.float64)
    return np.divide(repeat, x, out=np.zeros(len(x)), where=x > 0)
