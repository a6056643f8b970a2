"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): purchases at rate λ ~ Gamma(r, α)
while alive, an exponential lifetime with rate μ ~ Gamma(s, β). Formulas from Fader &
Hardie, "A Note on Deriving the Pareto/NBD Model and Related Expressions" (2005)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, hyp2f1

from ._fitting import Distinct, as_arrays, maximise, summaries


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


def _log_a0_term(r, alpha, s, beta, x, log_f_tx, log_f_T):
    """ln[s/(r+s+x) · A₀], A₀ = F(t_x) − F(T): the likelihood's share from customers who died in (t_x, T]."""
    with np.errstate(divide="ignore", invalid="ignore"):  # −inf when t_x = T
        log_a0 = log_f_tx + np.log1p(-np.exp(np.minimum(log_f_T - log_f_tx, 0.0)))
    return np.log(s) - np.log(r + s + x) + log_a0


def _log_alive_term(r, alpha, s, beta, x, T):
    return -(r + x) * np.log(alpha + T) - s * np.log(beta + T)


def _log_odds_dead(r, alpha, s, beta, x, t_x, T):
    log_f_tx, log_f_T = _log_f(r, alpha, s, beta, x, t_x), _log_f(r, alpha, s, beta, x, T)
    return _log_a0_term(r, alpha, s, beta, x, log_f_tx, log_f_T) - _log_alive_term(r, alpha, s, beta, x, T)


class _Objective:
    """The mean negative log-likelihood over the distinct rows:

    LL = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[(α+T)^−(r+x) (β+T)^−s + s/(r+s+x) A₀]

    ₂F₁ runs once per distinct (x, t_x) and (x, T) pair, which are far fewer than rows.
    """

    def __init__(self, rows: Distinct):
        self.xs = rows.levels[0]
        self.weights = rows.weights / rows.weights.sum()
        self.x_weights = np.bincount(rows.codes[0], weights=self.weights, minlength=len(self.xs))
        self.tx_pairs, self.T_pairs = rows.pair(0, 1), rows.pair(0, 2)

    def __call__(self, log_params):
        r, alpha, s, beta = np.exp(log_params)
        head = gammaln(r + self.xs) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        (x_tx, tx, tx_code), (x_T, T, T_code) = self.tx_pairs, self.T_pairs
        log_f_tx = _log_f(r, alpha, s, beta, x_tx, tx)[tx_code]
        # terms of (x, T) alone, once per pair
        log_f_T = _log_f(r, alpha, s, beta, x_T, T)
        share = (np.log(s) - np.log(r + s + x_T))[T_code]
        alive = _log_alive_term(r, alpha, s, beta, x_T, T)[T_code]
        with np.errstate(divide="ignore", invalid="ignore"):  # A₀ = 0 when t_x = T
            dead = share + log_f_tx + np.log1p(-np.exp(np.minimum(log_f_T[T_code] - log_f_tx, 0.0)))
        with np.errstate(invalid="ignore", over="ignore"):  # the optimiser may probe absurd parameters
            value = -(self.x_weights @ head + self.weights @ np.logaddexp(alive, dead))
        return value if np.isfinite(value) else 1e300  # far outside the plausible region


def fit_pareto_nbd(x, t_x, T) -> ParetoNBDParams:
    """Maximum-likelihood Pareto/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    rows = summaries(x, t_x, T)
    objective = _Objective(rows)
    x, _, T = rows.columns
    rate = (rows.weights @ x) / (rows.weights @ T)
    start = np.array([1.0, 1.0 / rate, 1.0, float(rows.weights @ T / rows.weights.sum())])
    params = maximise(objective, start, jac=False)
    return ParetoNBDParams(*map(float, params), log_likelihood=float(-objective(np.log(params)) * rows.weights.sum()))


def pareto_nbd_probability_alive(params: ParetoNBDParams, x, t_x, T) -> np.ndarray:
    """P(alive at T) = 1 / (1 + s/(r+s+x) (α+T)^(r+x) (β+T)^s A₀)."""
    x, t_x, T = as_arrays(x, t_x, T)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    return 1.0 / (1.0 + np.exp(_log_odds_dead(r, alpha, s, beta, x, t_x, T)))


def pareto_nbd_expected_purchases(params: ParetoNBDParams, t, x, t_x, T) -> np.ndarray:
    """E[repeat purchases in (T, T+t]] = (r+x)(β+T)/((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)."""
    x, t_x, T = as_arrays(x, t_x, T)
    t = np.asarray(t, dtype=np.float64)
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    return (r + x) * (beta + T) / (alpha + T) * _survival(s, beta, T, t) * pareto_nbd_probability_alive(params, x, t_x, T)


def _survival(s, beta, T, t):
    """[1 − ((β+T)/(β+T+t))^(s−1)]/(s−1), whose limit at s = 1 is ln((β+T+t)/(β+T))."""
    shrink = np.log(beta + T) - np.log(beta + T + t)  # ≤ 0
    return -np.expm1((s - 1) * shrink) / (s - 1) if abs(s - 1) > 1e-12 else -shrink


def pareto_nbd_discounted_purchases(params: ParetoNBDParams, x, t_x, T, times, discount) -> np.ndarray:
    """Σₖ (E[Y(tₖ)] − E[Y(tₖ₋₁)]) · discountₖ per customer, t₀ = 0 < t₁ < ... (`times` holds t₁...).

    E[Y(t)] = (r+x)(β+T)/(α+T) · P(alive) · U(T, t), and U depends on T alone.
    """
    x, t_x, T = as_arrays(x, t_x, T)
    times, discount = as_arrays(times, discount)
    levels, codes = np.unique(T, return_inverse=True)
    survival = _survival(params.s, params.beta, levels[:, None], times[None, :])
    per_T = np.diff(survival, axis=1, prepend=0.0) @ discount
    scale = (params.r + x) * (params.beta + T) / (params.alpha + T) * pareto_nbd_probability_alive(params, x, t_x, T)
    return scale * per_T[codes.reshape(-1)]
