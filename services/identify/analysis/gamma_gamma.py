"""Gamma-Gamma spend model (Fader & Hardie 2013, note 025): each transaction's value
z ~ Gamma(p, ν), with the customer's ν ~ Gamma(q, γ); fitted on repeat buyers' mean spend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, polygamma

from ._fitting import as_arrays, factorize, newton


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


class _Objective:
    """Mean over customers of −ln f(m̄ | x; p, q, γ), with its gradient and Hessian in log-parameters:

    ln f = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m̄ + px ln x − (px+q) ln(x m̄ + γ)

    The Γ functions run on the distinct x values; p and q enter the per-customer terms
    linearly, so per customer only ln(x m̄ + γ), 1/(x m̄ + γ) and its square remain, all
    summed with weights 1 and x in one matrix product.
    """

    def __init__(self, x, m):
        self.xs, codes = factorize(x)
        self.share = np.bincount(codes, minlength=len(self.xs)) / len(x)  # of customers, per distinct x
        self.total = x * m
        self.weights = np.column_stack([np.full(len(x), 1.0 / len(x)), x / len(x)])  # means, and means of x·
        self.mean_log_m, self.mean_x_log_m = np.log(m) @ self.weights
        self.buffers = np.empty((3, len(x)))  # reused between evaluations: no page faults for fresh arrays

    def __call__(self, log_params):
        params = np.exp(log_params)
        p, q, gamma = params
        xs, share = self.xs, self.share
        log_total, inverse_total, inverse_squared = self.buffers
        np.add(self.total, gamma, out=inverse_total)
        np.log(inverse_total, out=log_total)
        np.reciprocal(inverse_total, out=inverse_total)
        np.square(inverse_total, out=inverse_squared)
        # rows: mean ln(xm̄+γ), mean 1/(xm̄+γ), mean 1/(xm̄+γ)²; columns: plain, times x
        (mean_log, mean_x_log), (mean_inverse, mean_x_inverse), (mean_squared, mean_x_squared) = (
            self.buffers @ self.weights
        )
        px = p * xs
        ll = (
            share @ (gammaln(px + q) - gammaln(px) + px * np.log(xs))
            - gammaln(q)
            + q * np.log(gamma)
            + p * self.mean_x_log_m
            - self.mean_log_m
            - p * mean_x_log
            - q * mean_log
        )
        shared, shared1 = digamma(px + q), polygamma(1, px + q)
        gradient = np.array(
            [
                share @ (xs * (shared - digamma(px) + np.log(xs))) + self.mean_x_log_m - mean_x_log,
                share @ shared - digamma(q) + np.log(gamma) - mean_log,
                q / gamma - p * mean_x_inverse - q * mean_inverse,
            ]
        )
        hessian = np.empty((3, 3))
        hessian[0] = share @ (xs * xs * (shared1 - polygamma(1, px))), share @ (xs * shared1), -mean_x_inverse
        hessian[1, 1:] = share @ shared1 - polygamma(1, q), 1.0 / gamma - mean_inverse
        hessian[2, 2] = -q / gamma**2 + p * mean_x_squared + q * mean_squared
        hessian = np.triu(hessian) + np.triu(hessian, 1).T
        # natural → log-parameters: ∇θ = p∇, ∇²θ = diag(p) ∇² diag(p) + diag(p∇)
        gradient = gradient * params
        return -ll, -gradient, -(hessian * np.outer(params, params) + np.diag(gradient))


def fit_gamma_gamma(x, mean_spend) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat purchases x and mean spend per repeat purchase.

    Only customers with x > 0 and mean_spend > 0 carry information; the others are left out here.
    """
    x, m = as_arrays(x, mean_spend)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if len(x) < 2:
        raise ValueError("Gamma-Gamma needs at least two repeat buyers with positive spend")
    # method of moments for a Gamma(p, ν) spend with ν ~ Gamma(q, γ): a start close to the optimum
    mean = m.mean()
    start = np.array([max(mean**2 / max(m.var(), 1e-12) * 2.0, 0.5), 3.0, mean])
    params, _ = newton(_Objective(x, m), start)
    return GammaGammaParams(*map(float, params))


def gamma_gamma_expected_spend(params: GammaGammaParams, x, mean_spend) -> np.ndarray:
    """E[spend per purchase | x, m̄] = p(γ + x m̄)/(px + q − 1); the population mean pγ/(q−1) when x = 0."""
    x, m = as_arrays(x, mean_spend)
    m = np.where(x > 0, np.nan_to_num(m), 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + x * m) / (p * x + q - 1)
