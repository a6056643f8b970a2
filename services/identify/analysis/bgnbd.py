"""BG/NBD (Fader, Hardie & Lee 2005): purchases at rate λ ~ Gamma(r, α) while alive;
after each repeat purchase the customer drops out with probability p ~ Beta(a, b)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, hyp2f1

from ._fitting import Distinct, as_arrays, distinct_rows, maximise, summaries


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


def _log_likelihood(r, alpha, a, b, x, t_x, T):
    """Per-row log-likelihood (FHL 2005, eq. 6):

    LL = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
         + ln[(α+T)^−(r+x) + [x>0] a/(b+x−1) (α+t_x)^−(r+x)]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
            + np.logaddexp(-(r + x) * np.log(alpha + T), dropped))


class _Objective:
    """The mean negative log-likelihood over the distinct rows and its gradient in log-parameters.

    Terms of x alone run on the distinct x values with their summed weights, logarithms of
    α + T and α + t_x on the distinct T and t_x values; per row only the mixture remains:
    ln[e^A + e^D] = A + softplus(z) with A = −(r+x) ln(α+T), z = D − A.
    """

    def __init__(self, rows: Distinct):
        self.x = rows.columns[0]
        (self.xs, self.tx_levels, self.T_levels), (self.x_code, self.tx_code, self.T_code) = rows.levels, rows.codes
        self.weights = rows.weights / rows.weights.sum()  # the mean keeps the objective O(1)
        self.x_weights = np.bincount(self.x_code, weights=self.weights, minlength=len(self.xs))
        # Σ w·f(T) and Σ w·x·f(T) are sums over the distinct T values with these weights
        self.T_weights = np.bincount(self.T_code, weights=self.weights, minlength=len(self.T_levels))
        self.T_x_weights = np.bincount(self.T_code, weights=self.weights * self.x, minlength=len(self.T_levels))
        self.repeat = self.xs > 0

    def _rows(self, r, log_odds, log_T, log_tx, inverse_T, inverse_tx):
        """The sums that need every distinct row (the rest run on distinct values)."""
        x_code, tx_code, T_code, w = self.x_code, self.tx_code, self.T_code, self.weights
        gap = log_T[T_code] - log_tx[tx_code]  # ln(α+T) − ln(α+t_x) ≥ 0
        rx = r + self.x
        z = log_odds[x_code] + rx * gap
        # softplus(z) = ln(1 + e^z) and sigmoid(z) from one exponential, stable for any z
        e = np.exp(-np.abs(z))
        softplus = np.maximum(z, 0.0) + np.log1p(e)
        w_dropped = w * np.where(z >= 0, 1.0, e) / (1.0 + e)  # weight × share of the likelihood from "dropped out"
        inverse_gap = inverse_tx[tx_code] - inverse_T[T_code]
        return (w @ softplus, w_dropped @ gap, (w_dropped * rx) @ inverse_gap,
                np.bincount(x_code, weights=w_dropped, minlength=len(self.xs)))

    def __call__(self, log_params):
        r, alpha, a, b = np.exp(log_params)
        xs, wx = self.xs, self.x_weights
        with np.errstate(divide="ignore"):
            log_odds = np.where(self.repeat, np.log(a) - np.log(np.where(self.repeat, b + xs - 1, 1.0)), -np.inf)
        per_x = gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + betaln(a, b + xs) - betaln(a, b)
        log_T, inverse_T = np.log(alpha + self.T_levels), 1.0 / (alpha + self.T_levels)
        log_tx, inverse_tx = np.log(alpha + self.tx_levels), 1.0 / (alpha + self.tx_levels)
        softplus_sum, gap_sum, alpha_sum, dropped_by_x = self._rows(r, log_odds, log_T, log_tx, inverse_T, inverse_tx)
        sum_log_T = self.T_weights @ log_T
        value = wx @ per_x - r * sum_log_T - self.T_x_weights @ log_T + softplus_sum
        d_r = wx @ (digamma(r + xs) - digamma(r) + np.log(alpha)) - sum_log_T + gap_sum
        d_alpha = r / alpha - r * (self.T_weights @ inverse_T) - self.T_x_weights @ inverse_T - alpha_sum
        d_a = wx @ (digamma(a + b) - digamma(a + b + xs)) + dropped_by_x.sum() / a
        d_b = (wx @ (digamma(b + xs) - digamma(a + b + xs) - digamma(b) + digamma(a + b))
               - dropped_by_x[self.repeat] @ (1.0 / (b + xs[self.repeat] - 1)))
        return -value, -np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])


def fit_bgnbd(x, t_x, T) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    rows = summaries(x, t_x, T)
    x, _, T = rows.columns
    rate = (rows.weights @ x) / (rows.weights @ T)  # purchases per time unit: a scale-free start for α
    objective = _Objective(rows)
    params = maximise(objective, np.array([1.0, 1.0 / rate, 1.0, 1.0]), jac=True)
    mean_log_likelihood = -objective(np.log(params))[0]
    return BGNBDParams(*map(float, params), log_likelihood=float(mean_log_likelihood * rows.weights.sum()))


def bgnbd_probability_alive(params: BGNBDParams, x, t_x, T) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + [x>0] a/(b+x−1) ((α+T)/(α+t_x))^(r+x))."""
    x, t_x, T = as_arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(np.where(x > 0, log_odds, 0.0))), 1.0)


def bgnbd_expected_purchases(params: BGNBDParams, t, x, t_x, T) -> np.ndarray:
    """E[repeat purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10).

    (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive)
    """
    x, t_x, T = as_arrays(x, t_x, T)
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    horizon = alpha + T + t
    future = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(horizon))) * hyp2f1(r + x, b + x, a + b + x - 1, t / horizon)
    return (a + b + x - 1) / (a - 1) * future * bgnbd_probability_alive(params, x, t_x, T)


def bgnbd_expected_purchases_new(params: BGNBDParams, t) -> np.ndarray:
    """E[repeat purchases in (0, t]] of a customer just acquired (FHL 2005, eq. 9)."""
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


_CELLS_PER_CHUNK = 2_000_000  # (x, T) pairs × time steps evaluated at once; bounds memory


def bgnbd_discounted_purchases(params: BGNBDParams, x, t_x, T, times, discount) -> np.ndarray:
    """Σₖ (E[Y(tₖ)] − E[Y(tₖ₋₁)]) · discountₖ per customer, t₀ = 0 < t₁ < ... (`times` holds t₁...).

    E[Y(t)] = C(x) · [1 − G(x, T, t)] · P(alive), so each increment is C · P · (G(tₖ₋₁) − G(tₖ)):
    the ₂F₁ in G runs once per distinct (x, T) pair and time, not per customer.
    """
    x, t_x, T = as_arrays(x, t_x, T)
    times, discount = as_arrays(times, discount)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    pairs = distinct_rows(x, T)
    px, pT = pairs.columns
    per_pair = np.empty(len(px))
    chunk = max(1, _CELLS_PER_CHUNK // len(times))
    for start in range(0, len(px), chunk):  # chunks of pairs, each one array operation
        rows = slice(start, start + chunk)
        xs, Ts = px[rows, None], pT[rows, None]
        horizon = alpha + Ts + times[None, :]
        g = np.exp((r + xs) * (np.log(alpha + Ts) - np.log(horizon))) * hyp2f1(r + xs, b + xs, a + b + xs - 1, times / horizon)
        per_pair[rows] = np.diff(g, axis=1, prepend=1.0) @ -discount
    scale = (a + b + x - 1) / (a - 1) * bgnbd_probability_alive(params, x, t_x, T)
    return scale * per_pair[pairs.inverse]
