"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): purchases at rate λ ~ Gamma(r, α)
while alive, an exponential lifetime with rate μ ~ Gamma(s, β). Formulas from Fader &
Hardie, "A Note on Deriving the Pareto/NBD Model and Related Expressions" (2005)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, hyp2f1

from ._fitting import as_arrays, collapse, maximise


@dataclass(frozen=True)
class ParetoNBDParams:
    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float


def _log_f(r, alpha, s, beta, x, t):
    """ln of ₂F₁(r+s+x, ·; r+s+x+1; z(t)) / (max(α, β) + t)^(r+s+x), the antiderivative in A₀.

    For α < β the textbook form ₂F₁(r+s+x, r+x; r+s+x+1; (β−α)/(β+t)) overflows for large x;
    Pfaff's transformation turns it into (α+t)^−(r+x) (β+t)^−s ₂F₁(1, r+x; r+s+x+1; (α−β)/(α+t)),
    which stays finite.
    """
    n = r + s + x
    if alpha >= beta:
        return np.log(hyp2f1(n, s + 1, n + 1, (alpha - beta) / (alpha + t))) - n * np.log(alpha + t)
    return (np.log(hyp2f1(1.0, r + x, n + 1, (alpha - beta) / (alpha + t)))
            - (r + x) * np.log(alpha + t) - s * np.log(beta + t))


def _log_a0_term(r, alpha, s, beta, x, t_x, T):
    """ln[s/(r+s+x) · A₀]: the likelihood's share from customers who died in (t_x, T]; −inf when t_x = T."""
    upper = _log_f(r, alpha, s, beta, x, t_x)
    lower = _log_f(r, alpha, s, beta, x, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a0 = upper + np.log1p(-np.exp(np.minimum(lower - upper, 0.0)))
    return np.log(s) - np.log(r + s + x) + log_a0


def _log_alive_term(r, alpha, s, beta, x, T):
    return -(r + x) * np.log(alpha + T) - s * np.log(beta + T)


def _log_likelihood(r, alpha, s, beta, x, t_x, T):
    """LL = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[(α+T)^−(r+x) (β+T)^−s + s/(r+s+x) A₀]."""
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return head + np.logaddexp(_log_alive_term(r, alpha, s, beta, x, T), _log_a0_term(r, alpha, s, beta, x, t_x, T))


def fit_pareto_nbd(x, t_x, T) -> ParetoNBDParams:
    """Maximum-likelihood Pareto/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    (x, t_x, T), weights = collapse(x, t_x, T)
    if weights.sum() == 0 or not (x > 0).any():
        raise ValueError("Pareto/NBD needs customers with repeat purchases")
    total = weights.sum()

    def negative(log_params):
        value = -(weights @ _log_likelihood(*np.exp(log_params), x, t_x, T)) / total
        return value if np.isfinite(value) else 1e300

    rate = (weights @ x) / (weights @ T)
    start = np.array([1.0, 1.0 / rate, 1.0, np.mean(T)])
    params, mean_ll = maximise(negative, start, jac=False)
    return ParetoNBDParams(*map(float, params), log_likelihood=mean_ll * float(total))


def pareto_nbd_probability_alive(params: ParetoNBDParams, x, t_x, T) -> np.ndarray:
    """P(alive at T) = 1 / (1 + s/(r+s+x) (α+T)^(r+x) (β+T)^s A₀)."""
    x, t_x, T = as_arrays(x, t_x, T)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    log_odds = _log_a0_term(r, alpha, s, beta, x, t_x, T) - _log_alive_term(r, alpha, s, beta, x, T)
    return 1.0 / (1.0 + np.exp(log_odds))


def pareto_nbd_expected_purchases(params: ParetoNBDParams, t, x, t_x, T) -> np.ndarray:
    """E[repeat purchases in (T, T+t]] = (r+x)(β+T)/((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)."""
    x, t_x, T = as_arrays(x, t_x, T)
    t = np.asarray(t, dtype=np.float64)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    shrink = np.log(beta + T) - np.log(beta + T + t)  # ≤ 0
    # [1 − e^((s−1)·shrink)]/(s−1), whose limit at s = 1 is −shrink
    survival = -np.expm1((s - 1) * shrink) / (s - 1) if abs(s - 1) > 1e-12 else -shrink
    return (r + x) * (beta + T) / (alpha + T) * survival * pareto_nbd_probability_alive(params, x, t_x, T)
