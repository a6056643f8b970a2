"""Gamma-Gamma spend model (Fader & Hardie 2013, note 025): each transaction's value
z ~ Gamma(p, ν), with the customer's ν ~ Gamma(q, γ); fitted on repeat buyers' mean spend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from ._fitting import as_arrays, factorize, maximise


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


class _Objective:
    """Mean over customers of −ln f(m̄ | x; p, q, γ), with its gradient in log-parameters:

    ln f = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m̄ + px ln x − (px+q) ln(x m̄ + γ)

    The Γ functions run on the distinct x values; per customer only ln(x m̄ + γ) remains.
    """

    def __init__(self, x, m):
        self.xs, codes = factorize(x)
        self.share = np.bincount(codes, minlength=len(self.xs)) / len(x)  # of customers, per distinct x
        self.x, self.total = x, x * m
        self.mean_log_m, self.mean_x_log_m = np.log(m).mean(), (x * np.log(m)).mean()

    def __call__(self, log_params):
        p, q, gamma = np.exp(log_params)
        xs, share = self.xs, self.share
        log_total = np.log(self.total + gamma)
        inverse_total = 1.0 / (self.total + gamma)
        mean_log, mean_x_log = log_total.mean(), self.x @ log_total / len(self.x)
        px = p * xs
        ll = (share @ (gammaln(px + q) - gammaln(px) + px * np.log(xs)) - gammaln(q) + q * np.log(gamma)
              + p * self.mean_x_log_m - self.mean_log_m - p * mean_x_log - q * mean_log)
        shared = digamma(px + q)
        d_p = share @ (xs * (shared - digamma(px) + np.log(xs))) + self.mean_x_log_m - mean_x_log
        d_q = share @ shared - digamma(q) + np.log(gamma) - mean_log
        d_gamma = q / gamma - p * (self.x @ inverse_total) / len(self.x) - q * inverse_total.mean()
        return -ll, -np.array([d_p * p, d_q * q, d_gamma * gamma])


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
    params = maximise(_Objective(x, m), start, jac=True)
    return GammaGammaParams(*map(float, params))


def gamma_gamma_expected_spend(params: GammaGammaParams, x, mean_spend) -> np.ndarray:
    """E[spend per purchase | x, m̄] = p(γ + x m̄)/(px + q − 1); the population mean pγ/(q−1) when x = 0."""
    x, m = as_arrays(x, mean_spend)
    m = np.where(x > 0, np.nan_to_num(m), 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + x * m) / (p * x + q - 1)
