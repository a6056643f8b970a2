"""What every maximum-likelihood fit here shares: collapsing identical rows and the optimiser."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def distinct_rows(*columns) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of the given columns, how often each occurs, and each input row's distinct row.

    A customer base has far fewer distinct (x, t_x, T) rows than customers (every
    one-time buyer of the same day is the same row), so likelihoods and expectations
    are evaluated once per distinct row.
    """
    stacked = np.column_stack(as_arrays(*columns))
    rows, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(np.float64), inverse.reshape(-1)


def collapse(*columns) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the given columns and their counts, the weights of a likelihood."""
    rows, counts, _ = distinct_rows(*columns)
    return rows, counts


def maximise(negative_log_likelihood, start, *, jac: bool) -> tuple[np.ndarray, float]:
    """Maximise a log-likelihood over log-parameters; returns (parameters, log-likelihood).

    `negative_log_likelihood(log_params)` returns the value (and its gradient if `jac`).
    L-BFGS-B with tolerances tight enough to reproduce published estimates to well
    beyond 3 significant digits; a Nelder-Mead polish guards against a stalled line search.
    """
    result = minimize(negative_log_likelihood, np.log(start), method="L-BFGS-B", jac=jac,
                      options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000, "maxcor": 20})
    if not result.success and not np.isfinite(result.fun):
        raise ArithmeticError(f"fit did not converge: {result.message}")
    return np.exp(result.x), -float(result.fun)


def as_arrays(*columns) -> list[np.ndarray]:
    return [np.asarray(c, dtype=np.float64) for c in columns]
