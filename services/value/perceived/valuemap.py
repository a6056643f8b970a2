"""Gale's customer value map, as pure arithmetic over rating counts and sums (no database).

Every figure is computed from `Cell`s, the count and sum of the valid (1-10) ratings of one
attribute of one subject in one month, so the repository hands over a few hundred numbers
whatever the number of ratings. docs/value.md ("Customer-perceived value against
competitors") states the formulas; in short, for a subject s (us or a competitor):

* attribute mean           m(s,a) = Σ scores / n(s,a)
* perceived quality        Q(s) = Σ w(a)·m(s,a) / Σ w(a), over the non-price attributes with
                           a weight above 0 that s has ratings for (the weights renormalised
                           over those, so an attribute no one rated is not read as a 0)
* price score              S(s) = m(s, price): 10 is "a good price", as every rating's 10 is best
* perceived price          P(s) = 11 − S(s): 10 is "expensive", the value map's x axis
* perceived worth          V(s) = (1 − π)·Q(s) + π·S(s), π = w(price) / Σ every weight
* customer value added     CVA(c) = V(us) / V(c), for each competitor c
* fair-value line          Q = a + b·P, least squares through the subjects' (P, Q) points
* value position           Q(s) − (a + b·P(s)): above 0, more quality than its price buys
                           on the line (better value); below 0, worse.

A figure without the ratings it needs is None, never 0, and each comes with the number of
ratings behind it (0 with a null).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from shared.statistics import least_squares_line

US = "us"
SCALE_TOP = 10  # ratings run 1..10; perceived price is SCALE_TOP + 1 − price score
DIGITS = 6


@dataclass(frozen=True)
class Attribute:
    key: str
    name: str
    weight: float
    price: bool


@dataclass(frozen=True)
class Subject:
    key: str  # `us` or the competitor's key
    name: str
    competitor_id: str | None


@dataclass(frozen=True)
class Cell:
    """The valid ratings of one attribute of one subject in one month."""

    attribute: str
    subject: str
    month: str
    n: int
    total: float


@dataclass
class _Sums:
    n: int = 0
    total: float = 0.0

    def add(self, n: int, total: float) -> None:
        self.n += n
        self.total += total

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


def _metric(value: float | None, ratings: int) -> dict:
    """A figure and the ratings it is computed from (none when it could not be computed)."""

    if value is None:
        return {"value": None, "ratings": 0}
    return {"value": round(value, DIGITS), "ratings": ratings}


@dataclass(frozen=True)
class Weights:
    quality: dict[str, float]  # non-price attribute key -> its raw weight (> 0 only)
    price_key: str | None
    price_share: float  # π

    @classmethod
    def of(cls, attributes: Iterable[Attribute]) -> Weights:
        attributes = list(attributes)
        total = sum(a.weight for a in attributes)
        price = next((a for a in attributes if a.price), None)
        quality = {a.key: a.weight for a in attributes if not a.price and a.weight > 0}
        share = price.weight / total if price is not None and total > 0 else 0.0
        return cls(quality, price.key if price is not None else None, share)


def _figures(weights: Weights, sums: dict[str, _Sums]) -> dict:
    """Quality, price and worth of one subject from its per-attribute sums."""

    rated = {key: sums[key] for key in weights.quality if key in sums and sums[key].n}
    weight = sum(weights.quality[key] for key in rated)
    quality = sum(weights.quality[key] * (s.mean or 0.0) for key, s in rated.items()) / weight if weight else None
    quality_n = sum(s.n for s in rated.values())
    price = sums.get(weights.price_key) if weights.price_key else None
    score = price.mean if price is not None else None
    price_n = price.n if price is not None else 0
    pi = weights.price_share
    worth: float | None
    if pi == 0:
        worth, worth_n = quality, quality_n
    elif pi == 1:
        worth, worth_n = score, price_n
    elif quality is None or score is None:
        worth, worth_n = None, quality_n + price_n
    else:
        worth, worth_n = (1 - pi) * quality + pi * score, quality_n + price_n
    return {
        "quality": (quality, quality_n),
        "score": (score, price_n),
        "price": (None if score is None else SCALE_TOP + 1 - score, price_n),
        "worth": (worth, worth_n),
    }


def _ratio(ours: tuple[float | None, int], theirs: tuple[float | None, int]) -> dict:
    (v_us, n_us), (v_them, n_them) = ours, theirs
    value = v_us / v_them if v_us is not None and v_them else None
    return _metric(value, n_us + n_them)


def _shown(figures: dict, ratio: dict | None) -> dict:
    return {
        "perceived_quality": _metric(*figures["quality"]),
        "price_score": _metric(*figures["score"]),
        "perceived_price": _metric(*figures["price"]),
        "perceived_worth": _metric(*figures["worth"]),
        "value_added_ratio": ratio if ratio is not None else _metric(None, 0),
    }


def value_map(attributes: list[Attribute], subjects: list[Subject], cells: Iterable[Cell]) -> dict:
    """The map's subjects (us first), the weights it used and its fair-value line.

    `subjects` must start with us; `cells` name only the attributes and subjects given."""

    assert subjects and subjects[0].key == US
    weights = Weights.of(attributes)
    overall: dict[str, dict[str, _Sums]] = {s.key: defaultdict(_Sums) for s in subjects}
    monthly: dict[str, dict[str, dict[str, _Sums]]] = defaultdict(lambda: {s.key: defaultdict(_Sums) for s in subjects})
    for cell in cells:
        overall[cell.subject][cell.attribute].add(cell.n, cell.total)
        monthly[cell.month][cell.subject][cell.attribute].add(cell.n, cell.total)

    figures = {s.key: _figures(weights, overall[s.key]) for s in subjects}
    points = [
        (f["price"][0], f["quality"][0])
        for f in figures.values()
        if f["price"][0] is not None and f["quality"][0] is not None
    ]
    line = least_squares_line(points)
    trend = {
        month: {s.key: _figures(weights, by_subject[s.key]) for s in subjects}
        for month, by_subject in sorted(monthly.items())
    }

    shown = []
    for s in subjects:
        f = figures[s.key]
        ratio = None if s.key == US else _ratio(figures[US]["worth"], f["worth"])
        price, quality = f["price"][0], f["quality"][0]
        fair = line.at(price) if line is not None and price is not None else None
        shown.append(
            {
                "subject": s.name if s.key != US else US,
                "competitor_id": s.competitor_id,
                "attributes": [
                    {
                        "attribute": a.name,
                        "mean_score": _metric(overall[s.key][a.key].mean, overall[s.key][a.key].n)["value"],
                        "ratings": overall[s.key][a.key].n,
                    }
                    for a in attributes
                ],
                **_shown(f, ratio),
                "fair_value_quality": None if fair is None else round(fair, DIGITS),
                "value_position": None if fair is None or quality is None else round(quality - fair, DIGITS),
                "trend": [
                    {
                        "month": month,
                        **_shown(
                            by_subject[s.key],
                            None if s.key == US else _ratio(by_subject[US]["worth"], by_subject[s.key]["worth"]),
                        ),
                    }
                    for month, by_subject in trend.items()
                ],
            }
        )
    quality_total = sum(weights.quality.values())
    return {
        "weights": [
            {
                "attribute": a.name,
                "price": a.price,
                "weight": a.weight,
                # A non-price attribute's share of perceived quality; the price attribute's, π, of worth.
                "share": round(
                    weights.price_share
                    if a.price
                    else (weights.quality.get(a.key, 0.0) / quality_total if quality_total else 0.0),
                    DIGITS,
                ),
            }
            for a in attributes
        ],
        "subjects": shown,
        "fair_value_line": {
            "method": "least_squares",
            "intercept": None if line is None else round(line.intercept, DIGITS),
            "slope": None if line is None else round(line.slope, DIGITS),
            "points": len(points),
        },
    }
