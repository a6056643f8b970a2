"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): purchases at rate λ ~ Gamma(r, α)
while alive, an exponential lifetime with rate μ ~ Gamma(s, β). Formulas from Fader &
Hardie, "A Note on Deriving the Pareto/NBD Model and Related Expressions" (2005)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln, hyp2f1, polygamma

from ._fitting import Distinct, as_arrays, newton_from_sample, summaries


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
    return (
        np.log(hyp2f1(1.0, r + x, n + 1, (alpha - beta) / (alpha + t)))
        - (r + x) * np.log(alpha + t)
        - s * np.log(beta + t)
    )


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


# finite-difference steps in a log-parameter for ln ₂F₁: small for the gradient (central
# differences, error ~1e-10), larger for the Hessian, where ₂F₁'s own rounding (~1e-12)
# divided by step² would otherwise dominate; Newton needs the Hessian only roughly
_STEP, _HESSIAN_STEP = 1e-5, 1e-3
_REUSE_HESSIAN = 0.01  # largest change of a log-parameter over which that Hessian is reused


def _log_hyp2f1(r, alpha, s, beta, x, t, pfaff: bool):
    """The ln ₂F₁ part of `_log_f`, in the form chosen by `pfaff` (both are exact; the choice is numerical)."""
    n = r + s + x
    if pfaff:
        return np.log(hyp2f1(1.0, r + x, n + 1, (alpha - beta) / (alpha + t)))
    return np.log(hyp2f1(n, s + 1, n + 1, (alpha - beta) / (alpha + t)))


def _power_terms(r, alpha, s, beta, x, t, kappa):
    """−(r+x) ln(α+t) − s ln(κ+t), κ = α or β (`kappa` is alpha or beta), with its gradient
    (rows × 4) and Hessian (rows × 4 × 4) in log-parameters (ln r, ln α, ln s, ln β)."""
    k = 1 if kappa is alpha else 3
    log_a, log_k = np.log(alpha + t), np.log(kappa + t)
    share_a, share_k = alpha / (alpha + t), kappa / (kappa + t)
    curve_a, curve_k = share_a * t / (alpha + t), share_k * t / (kappa + t)  # ∂ of the shares in ln α, ln κ
    gradient = np.zeros((len(t), 4))
    gradient[:, 0], gradient[:, 1], gradient[:, 2] = -r * log_a, -(r + x) * share_a, -s * log_k
    gradient[:, k] -= s * share_k
    hessian = np.zeros((len(t), 4, 4))
    hessian[:, 0, 0], hessian[:, 2, 2] = gradient[:, 0], gradient[:, 2]
    hessian[:, 0, 1] = hessian[:, 1, 0] = -r * share_a
    hessian[:, 2, k] = hessian[:, k, 2] = -s * share_k
    hessian[:, 1, 1] = -(r + x) * curve_a
    hessian[:, k, k] -= s * curve_k
    return -(r + x) * log_a - s * log_k, gradient, hessian


def _log_f_derivatives(log_params, x, t, pfaff: bool, hyp_hessian=None):
    """`_log_f` at pairs (x, t) with its gradient and Hessian in log-parameters, and the Hessian
    of its ln ₂F₁ part: the power terms analytically, ln ₂F₁ by central (and for mixed terms,
    forward) differences, or its Hessian `hyp_hessian` from a nearby point when given."""

    def hyp(shift):
        r, alpha, s, beta = np.exp(log_params + shift)
        return _log_hyp2f1(r, alpha, s, beta, x, t, pfaff)

    at = hyp(0.0)
    gradient = np.stack([(hyp(e) - hyp(-e)) / (2 * _STEP) for e in _STEP * np.eye(4)], axis=1)
    step = _HESSIAN_STEP * np.eye(4)
    up = [hyp(e) for e in step] if hyp_hessian is None else []
    hessian = np.empty((len(x), 4, 4)) if hyp_hessian is None else hyp_hessian
    for i in range(len(up)):
        hessian[:, i, i] = (up[i] + hyp(-step[i]) - 2 * at) / _HESSIAN_STEP**2
        for j in range(i + 1, 4):
            hessian[:, i, j] = hessian[:, j, i] = (hyp(step[i] + step[j]) - up[i] - up[j] + at) / _HESSIAN_STEP**2
    r, alpha, s, beta = np.exp(log_params)
    value, d1, d2 = _power_terms(r, alpha, s, beta, x, t, alpha if not pfaff else beta)
    return at + value, gradient + d1, hessian + d2, hessian


class _Objective:
    """The mean negative log-likelihood over the distinct rows, with its gradient and Hessian
    in log-parameters (ln r, ln α, ln s, ln β):

    LL = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[e^A + e^D], A = −(r+x) ln(α+T) − s ln(β+T),
    D = ln(s/(r+s+x)) + ln[F(t_x) − F(T)] = S + F_x + ln(1 − e^(F_T − F_x)).

    ₂F₁ runs once per distinct (x, t_x) and (x, T) pair, which are far fewer than rows, and
    so do the derivatives of A, S, F_x and F_T; the rows combine them by the chain rule
    (the second-order terms as two weighted Gram matrices).
    """

    def __init__(self, rows: Distinct):
        self.xs = rows.levels[0]
        self.weights = rows.weights / rows.weights.sum()
        self.x_weights = np.bincount(rows.codes[0], weights=self.weights, minlength=len(self.xs))
        self.tx_pairs, self.T_pairs = rows.pair(0, 1), rows.pair(0, 2)
        # (log-parameters, form, per pair set) of the last finite-difference Hessians
        self.hyp_hessians: tuple[np.ndarray, bool, list[Any]] | None = None

    def _pair_terms(self, log_params, pfaff):
        """`_log_f_derivatives` at the (x, t_x) and (x, T) pairs.

        The Hessian of ln ₂F₁ takes most of the ₂F₁ evaluations (14 of 23); within
        `_REUSE_HESSIAN` of where it was last computed it is reused. Only Newton's steps
        depend on it, not the gradient nor so the optimum, and near the optimum Newton
        steps are that small, so the last steps cost 9 ₂F₁ evaluations per pair.
        """
        cached = self.hyp_hessians
        reused = (
            cached[2]
            if cached is not None and cached[1] == pfaff and np.abs(log_params - cached[0]).max() <= _REUSE_HESSIAN
            else None
        )
        terms = [
            _log_f_derivatives(log_params, x, t, pfaff, reused[i] if reused is not None else None)
            for i, (x, t, _) in enumerate((self.tx_pairs, self.T_pairs))
        ]
        if reused is None:
            self.hyp_hessians = (log_params, pfaff, [term[3] for term in terms])
        return [term[:3] for term in terms]

    def _head(self, r, alpha, s, beta):
        """Σ w·(lnΓ(r+x) − lnΓ(r) + r ln α + s ln β) with its gradient and Hessian in log-parameters."""
        wx, xs = self.x_weights, self.xs
        d_r = wx @ digamma(r + xs) - digamma(r) + np.log(alpha)
        gradient = np.array([r * d_r, r, s * np.log(beta), s])
        hessian = np.zeros((4, 4))
        hessian[0, 0] = r * d_r + r * r * (wx @ polygamma(1, r + xs) - polygamma(1, r))
        hessian[0, 1] = hessian[1, 0] = r
        hessian[2, 2], hessian[2, 3], hessian[3, 2] = gradient[2], s, s
        return wx @ gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + s * np.log(beta), gradient, hessian

    def __call__(self, log_params):
        r, alpha, s, beta = np.exp(log_params)
        pfaff = alpha < beta
        (_, tx, tx_code), (x_T, T, T_code) = self.tx_pairs, self.T_pairs
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # the optimiser may probe absurd parameters
            (f_x, df_x, d2f_x), (f_T, df_T, d2f_T) = self._pair_terms(log_params, pfaff)
            alive, d_alive, d2_alive = _power_terms(r, alpha, s, beta, x_T, T, beta)
            n = r + s + x_T
            share = np.log(s) - np.log(n)  # S = ln(s/(r+s+x))
            d_share = np.zeros((len(n), 4))
            d_share[:, 0], d_share[:, 2] = -r / n, 1 - s / n
            d2_share = np.zeros((len(n), 4, 4))
            d2_share[:, 0, 0], d2_share[:, 2, 2] = -r * (n - r) / n**2, -s * (n - s) / n**2
            d2_share[:, 0, 2] = d2_share[:, 2, 0] = r * s / n**2
            value, gradient, hessian = self._head(r, alpha, s, beta)
            w = self.weights
            # rows: ℓ = ln(e^A + e^D); π = share of "died" in it; ratio = q/(1−q), q = e^(F_T − F_x)
            fx = f_x[tx_code]
            one_minus_q = -np.expm1(np.minimum(f_T[T_code] - fx, 0.0))  # 0 when t_x = T: no "died" term
            A = alive[T_code]
            D = share[T_code] + fx + np.log(one_minus_q)
            gap = D - A
            e = np.exp(-np.abs(gap))
            value += w @ (np.maximum(A, D) + np.log1p(e))
            half = 1.0 / (1.0 + e)
            dead = np.copysign(half - 0.5, gap) + 0.5  # π = sigmoid(D − A)
            both = e * half * half  # π(1 − π)
            ratio = np.where(one_minus_q > 0, (1.0 - one_minus_q) / np.where(one_minus_q > 0, one_minus_q, 1.0), 0.0)
            # first order: ∇ℓ = (1−π)∇A + π[∇S + (1+ratio)∇F_x − ratio ∇F_T]; per pair, Σ w·(those weights)
            wd = w * dead
            c_alive = np.bincount(T_code, weights=w - wd, minlength=len(T))
            c_share = np.bincount(T_code, weights=wd, minlength=len(T))
            c_fT = -np.bincount(T_code, weights=wd * ratio, minlength=len(T))
            c_fx = np.bincount(tx_code, weights=wd * (1.0 + ratio), minlength=len(tx))
            gradient = gradient + c_alive @ d_alive + c_share @ d_share + c_fT @ df_T + c_fx @ df_x
            hessian = hessian + (
                np.tensordot(c_alive, d2_alive, 1)
                + np.tensordot(c_share, d2_share, 1)
                + np.tensordot(c_fT, d2f_T, 1)
                + np.tensordot(c_fx, d2f_x, 1)
            )
            # second order: π(1−π)·U Uᵀ, U = ∇A − ∇D, and π·ψ''·V Vᵀ, V = ∇F_T − ∇F_x, ψ'' = −ratio(1+ratio)
            for chunk in range(0, len(w), _CHUNK):
                rows = slice(chunk, chunk + _CHUNK)
                gx, gT = df_x[tx_code[rows]], df_T[T_code[rows]]
                V = gT - gx
                U = (d_alive - d_share)[T_code[rows]] - gx - ratio[rows, None] * (gx - gT)
                hessian += (U * (w[rows] * both[rows])[:, None]).T @ U
                hessian -= (V * (wd[rows] * ratio[rows] * (1.0 + ratio[rows]))[:, None]).T @ V
        if not (np.isfinite(value) and np.isfinite(gradient).all() and np.isfinite(hessian).all()):
            return np.inf, gradient, hessian  # far outside the plausible region: the step is halved
        return -value, -gradient, -hessian


_CHUNK = 65_536  # rows per block in the Hessian's Gram matrices


def fit_pareto_nbd(x, t_x, T) -> ParetoNBDParams:
    """Maximum-likelihood Pareto/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    rows = summaries(x, t_x, T)
    x, _, T = rows.columns
    rate = (rows.weights @ x) / (rows.weights @ T)
    start = np.array([1.0, 1.0 / rate, 1.0, float(rows.weights @ T / rows.weights.sum())])
    params, mean_loss = newton_from_sample(_Objective, rows, start)
    r, alpha, s, beta = map(float, params)
    return ParetoNBDParams(r, alpha, s, beta, log_likelihood=float(-mean_loss * rows.weights.sum()))


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
    return (
        (r + x) * (beta + T) / (alpha + T) * _survival(s, beta, T, t) * pareto_nbd_probability_alive(params, x, t_x, T)
    )


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
