"""The Kaplan–Meier estimate, pure: from durations in whole days to the survival curve.

Only lifecycle needs it, so it lives here rather than in shared/statistics.py. Ties follow
the usual convention: at a time with both, the events come first and the censored
customers still count as at risk. The interval is Greenwood's variance on the log(−log)
scale (Kalbfleisch & Prentice; lifelines' default), which keeps it inside [0, 1].
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Point:
    t_days: int
    survival: float
    at_risk: int
    events: int
    censored: int
    lower: float
    upper: float


def kaplan_meier(events: Counter[int], censored: Counter[int], confidence: float = 0.95) -> list[Point]:
    """One point per distinct time with an event or a censoring: S(t) just after it."""

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    at_risk = sum(events.values()) + sum(censored.values())
    survival, greenwood = 1.0, 0.0
    points = []
    for t in sorted(events.keys() | censored.keys()):
        d, c = events.get(t, 0), censored.get(t, 0)
        if d:
            survival *= 1 - d / at_risk
            greenwood = greenwood + d / (at_risk * (at_risk - d)) if at_risk > d else math.inf
        points.append(Point(t, survival, at_risk, d, c, *_interval(survival, greenwood, z)))
        at_risk -= d + c
    return points


def _interval(survival: float, greenwood: float, z: float) -> tuple[float, float]:
    if survival <= 0.0 or survival >= 1.0 or math.isinf(greenwood):
        return survival, survival
    spread = z * math.sqrt(greenwood) / abs(math.log(survival))
    return survival ** math.exp(spread), survival ** math.exp(-spread)


def median(points: list[Point]) -> int | None:
    """The first time the curve is at or below one half; None while it stays above."""

    return next((p.t_days for p in points if p.survival <= 0.5), None)
