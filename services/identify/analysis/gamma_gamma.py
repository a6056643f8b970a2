"""Gamma-Gamma spend model (Fader & Hardie 2013, note 025): each transaction's value
z ~ Gamma(p, ν), with the customer's ν ~ Gamma(q, γ); fitted on repeat buyers' mean spend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from ._fitting import as_arrays, maximise


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


def _negative_log_likelihood(log_params, x, m):
    """Mean over customers of −ln f(m̄ | x; p, q, γ), with its gradient in log-parameters.

    ln f = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m̄ + px ln x − (px+q) ln(x m̄ + γ)
    """
    p, q, gamma = np.exp(log_params)
    px = p * x
    log_total = np.log(x * m + gamma)
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
          + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * log_total)
    shared = digamma(px + q)
    d_p = x * (shared - digamma(px) + np.log(m) + np.log(x) - log_total)
    d_q = shared - digamma(q) + np.log(gamma) - log_total
    d_gamma = q / gamma - (px + q) / (x * m + gamma)
    gradient = np.array([d_p.mean() * p, d_q.mean() * q, d_gamma.mean() * gamma])
    return -ll.mean(), -gradient


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
    params = maximise(lambda lp: _negative_log_likelihood(lp, x, m), start, jac=True)
    return GammaGammaParams(*map(float, params))


def gamma_gamma_expected_spend(params: GammaGammaParams, x, mean_spend) -> np.ndarray:
    """E[spend per purchase | x, m̄] = p(γ + x m̄)/(px + q − 1); the population mean pγ/(q−1) when x = 0."""
    x, m = as_arrays(x, mean_spend)
    m = np.where(x > 0, np.nan_to_num(m), 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + x * m) / (p * x + q - 1)
