"""The statistics several services need, once, as pure functions (shared/decisions.md).

engage's feedback report (NPS, CSAT and CES with their 95% intervals), value's campaign
results and next best offer, and lifecycle's playbooks all read from here. Inputs are
counts and summaries (n, mean, variance) rather than samples, so a service computes them
with one SQL aggregate over a million rows and hands the few numbers over. Intervals are
two-sided at `confidence`; a cell with too little data has `None` bounds rather than a
made-up width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special, stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (`low`/`high` are None when it cannot be had)."""

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Summary:
    """A sample described by its size, mean and (sample, n-1) variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def from_sums(cls, n: int, total: float, total_of_squares: float) -> Summary:
        """From what SQL computes in one pass: COUNT, SUM(x) and SUM(x*x)."""

        if n <= 0:
            return cls(0, 0.0, 0.0)
        mean = total / n
        variance = max(total_of_squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
        return cls(n, mean, variance)

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls.from_sums(len(values), float(sum(values)), float(sum(v * v for v in values)))


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def proportion(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """A share with its Wilson score interval (sound near 0 and 1, unlike the Wald one)."""

    _check_counts(successes, trials)
    if trials == 0:
        return Estimate(None, None, None, 0)
    z = _z(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), trials)


def proportion_difference(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = CONFIDENCE
) -> Estimate:
    """p_a − p_b with the unpooled normal (Wald) interval: a campaign's uplift in conversion,
    treatment (a) against holdout (b). `n` is the two groups' total."""

    _check_counts(successes_a, trials_a)
    _check_counts(successes_b, trials_b)
    n = trials_a + trials_b
    if trials_a == 0 or trials_b == 0:
        return Estimate(None, None, None, n)
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    difference = p_a - p_b
    se = math.sqrt(p_a * (1 - p_a) / trials_a + p_b * (1 - p_b) / trials_b)
    if se == 0:
        return Estimate(difference, None, None, n)
    z = _z(confidence)
    return Estimate(difference, difference - z * se, difference + z * se, n)


def welch_difference(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> Estimate:
    """mean_a − mean_b with Welch's t interval (unequal variances, Welch–Satterthwaite
    degrees of freedom): a campaign's uplift in revenue per customer."""

    n = a.n + b.n
    if a.n < 2 or b.n < 2:
        return Estimate(a.mean - b.mean if a.n and b.n else None, None, None, n)
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    difference = a.mean - b.mean
    if se == 0:
        return Estimate(difference, None, None, n)
    df = (va + vb) ** 2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, df))
    return Estimate(difference, difference - t * se, difference + t * se, n)


def mean(summary: Summary, confidence: float = CONFIDENCE) -> Estimate:
    """A mean with its t interval: CSAT (1–5) and CES (1–7) averages."""

    if summary.n == 0:
        return Estimate(None, None, None, 0)
    if summary.n < 2:
        return Estimate(summary.mean, None, None, summary.n)
    se = math.sqrt(summary.variance / summary.n)
    t = float(stats.t.ppf(0.5 + confidence / 2, summary.n - 1))
    return Estimate(summary.mean, summary.mean - t * se, summary.mean + t * se, summary.n)


@dataclass(frozen=True)
class Line:
    """y = intercept + slope·x, fitted through `points` points."""

    intercept: float
    slope: float
    points: int

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def least_squares_line(points: list[tuple[float, float]]) -> Line | None:
    """The ordinary least-squares line of y on x, each point weighing the same (the value
    map's fair-value line through the subjects' price and quality). None with fewer than two
    points or when every x is the same (no slope can be had)."""

    n = len(points)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    return Line(mean_y - slope * mean_x, slope, n)


def net_promoter_score(promoters: int, passives: int, detractors: int, confidence: float = CONFIDENCE) -> Estimate:
    """NPS = 100·(p_promoters − p_detractors), with the usual variance of that difference of
    two shares of one multinomial sample: Var = (p + d − (p − d)²) / n, on a 100-point scale."""

    for count in (promoters, passives, detractors):
        if count < 0:
            raise ValueError("counts must not be negative")
    n = promoters + passives + detractors
    if n == 0:
        return Estimate(None, None, None, 0)
    p, d = promoters / n, detractors / n
    score = 100 * (p - d)
    se = 100 * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n)
    if se == 0:
        return Estimate(score, None, None, n)
    z = _z(confidence)
    return Estimate(score, max(-100.0, score - z * se), min(100.0, score + z * se), n)


@dataclass(frozen=True)
class BetaPosterior:
    """A Beta–Binomial estimate of a response rate: Beta(alpha, beta) after the data."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The equal-tailed credible interval (the inverse regularised incomplete beta
        function directly: a frozen scipy.stats.beta costs a millisecond to make)."""

        tail = (1 - confidence) / 2
        low, high = special.betaincinv(self.alpha, self.beta, [tail, 1 - tail])
        return float(low), float(high)


def beta_binomial(
    successes: int, trials: int, *, prior_mean: float = 0.05, prior_strength: float = 2.0
) -> BetaPosterior:
    """The posterior of a rate under a weak Beta prior: `prior_strength` pseudo-trials at
    `prior_mean` (next best offer's response probability when a segment has few results)."""

    _check_counts(successes, trials)
    if not 0 < prior_mean < 1 or prior_strength <= 0:
        raise ValueError("the prior needs 0 < prior_mean < 1 and prior_strength > 0")
    alpha0 = prior_mean * prior_strength
    beta0 = (1 - prior_mean) * prior_strength
    return BetaPosterior(alpha0 + successes, beta0 + trials - successes)


def _check_counts(successes: int, trials: int) -> None:
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
