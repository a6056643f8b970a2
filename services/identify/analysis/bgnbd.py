"""BG/NBD (Fader, Hardie & Lee 2005): purchases at rate λ ~ Gamma(r, α) while alive;
after each repeat purchase the customer drops out with probability p ~ Beta(a, b)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, hyp2f1

from ._fitting import as_arrays, collapse, maximise


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


def _terms(r, alpha, a, b, x, t_x, T):
    """log-likelihood per row and the pieces its gradient needs.

    LL = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
         + ln[(α+T)^−(r+x) + [x>0] a/(b+x−1) (α+t_x)^−(r+x)]
    """
    repeat = x > 0
    alive = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(repeat, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    mix = np.logaddexp(alive, dropped)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b) + mix
    return ll, np.exp(alive - mix), np.exp(dropped - mix)


def _negative_log_likelihood(log_params, x, t_x, T, weights):
    r, alpha, a, b = np.exp(log_params)
    ll, w_alive, w_dropped = _terms(r, alpha, a, b, x, t_x, T)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_alive * np.log(alpha + T) - w_dropped * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + T) + w_dropped / (alpha + t_x))
    d_a = digamma(a + b) - digamma(a + b + x) + w_dropped / a
    with np.errstate(divide="ignore", invalid="ignore"):
        d_b = (digamma(b + x) - digamma(a + b + x) - digamma(b) + digamma(a + b)
               - np.where(x > 0, w_dropped / (b + x - 1), 0.0))
    total = weights.sum()
    gradient = np.array([weights @ d for d in (d_r, d_alpha, d_a, d_b)]) * np.array([r, alpha, a, b])
    # the mean keeps the objective O(1) whatever the number of customers
    return -(weights @ ll) / total, -gradient / total


def fit_bgnbd(x, t_x, T) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    (x, t_x, T), weights = collapse(x, t_x, T)
    if weights.sum() == 0 or not (x > 0).any():
        raise ValueError("BG/NBD needs customers with repeat purchases")
    rate = (weights @ x) / (weights @ T)  # purchases per time unit, a scale-free start for α
    start = np.array([1.0, 1.0 / rate, 1.0, 1.0])
    params, mean_ll = maximise(lambda p: _negative_log_likelihood(p, x, t_x, T, weights), start, jac=True)
    return BGNBDParams(*map(float, params), log_likelihood=mean_ll * float(weights.sum()))


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
