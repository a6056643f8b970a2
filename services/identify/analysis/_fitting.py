"""What the fits share: collapsing identical rows and the Newton optimiser."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SCALES = (1.0, 7.0)  # whole days, and days measured in weeks
_MAX_DIRECT = 10_000_000
_MAX_STEP = 2.0  # largest Newton step in a log-parameter: a factor e² at most
_SAMPLE_EVERY, _SAMPLE_MIN_ROWS, _SAMPLE_GTOL = 16, 50_000, 1e-4


def as_arrays(*columns) -> list[np.ndarray]:
    return [np.asarray(c, dtype=np.float64) for c in columns]


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values ascending, each value's index among them).

    Summaries are whole days or days / 7; for those, the distinct values come from a
    bincount of the day numbers, several times faster than sorting. A value counts as
    k/scale only when it is exactly the float k/scale, so the grouping is the same as
    grouping the floats themselves.
    """
    if values.size and np.isfinite(values).all():
        for scale in _SCALES:
            whole = np.round(values * scale)
            if whole.min() >= 0 and whole.max() < _MAX_DIRECT and np.array_equal(whole / scale, values):
                whole = whole.astype(np.int64)
                present = np.bincount(whole) > 0
                position = np.cumsum(present) - 1
                return np.flatnonzero(present) / scale, position[whole]
    levels, codes = np.unique(values, return_inverse=True)
    return levels, codes.reshape(-1)


def _sort_order(key: np.ndarray) -> np.ndarray:
    """argsort of non-negative integer keys; below 2³² as two 16-bit radix passes, ~4x faster."""
    if key.size and key.max() < 2**32:
        order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")  # numpy radix-sorts 16-bit keys
        return order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]
    return np.argsort(key)


def _group(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of each group's first row, each row's group, group sizes) of equal integer keys."""
    order = _sort_order(key)
    ordered = key[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.empty(len(key), dtype=np.int64)
    group[order] = np.cumsum(starts) - 1
    return order[starts], group, np.diff(np.r_[np.flatnonzero(starts), len(key)])


@dataclass(frozen=True)
class Distinct:
    """The distinct rows of some columns.

    A customer base has far fewer distinct (x, t_x, T) rows than customers (every one-time
    buyer of the same day is the same row), so likelihoods and expectations are evaluated
    once per distinct row. Within those rows each column has fewer distinct values still
    (a few hundred x, one T per acquisition day): `levels[i]` and `codes[i]` let the
    expensive functions of one column run on its levels only.
    """

    columns: list[np.ndarray]  # per column, its value in each distinct row
    weights: np.ndarray  # how many input rows each distinct row stands for
    inverse: np.ndarray  # each input row's distinct row
    levels: list[np.ndarray]  # per column, its distinct values
    codes: list[np.ndarray]  # per column, each distinct row's index into levels

    def pair(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (column i, column j) pairs: (values i, values j, each distinct row's pair)."""
        first, group, _ = _group(self.codes[i] * len(self.levels[j]) + self.codes[j])
        return self.columns[i][first], self.columns[j][first], group

    def sample(self, every: int) -> Distinct:
        """Every `every`-th distinct row: a cheap, rough version of the data for a starting point.

        The rows are in key order (by x, then t_x, then T), so the sample spreads over all
        of them. `inverse` stays that of the full rows.
        """
        pick = slice(0, None, every)
        return Distinct(
            [c[pick] for c in self.columns],
            self.weights[pick],
            self.inverse,
            self.levels,
            [c[pick] for c in self.codes],
        )


def distinct_rows(*columns) -> Distinct:
    arrays = as_arrays(*columns)
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("the columns must be one-dimensional and of the same length")
    levels, codes = zip(*(factorize(a) for a in arrays))
    if np.prod([float(len(level)) for level in levels]) < 2.0**62:
        key = codes[0].astype(np.int64)
        for level, code in zip(levels[1:], codes[1:]):
            key = key * len(level) + code
        first, inverse, counts = _group(key)
    else:  # too many combinations for one integer key
        _, first, inverse, counts = np.unique(
            np.column_stack(arrays), axis=0, return_index=True, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
    row_codes = [code[first] for code in codes]
    return Distinct(
        [level[code] for level, code in zip(levels, row_codes)],
        counts.astype(np.float64),
        inverse,
        list(levels),
        row_codes,
    )


def summaries(x, t_x, T) -> Distinct:
    """The distinct (x, t_x, T) rows of a customer base, after checking they make sense."""
    rows = distinct_rows(x, t_x, T)
    x, t_x, T = rows.columns
    if not (np.isfinite(T).all() and (x >= 0).all() and (t_x >= 0).all() and (t_x <= T).all()):
        raise ValueError("summaries need finite x >= 0 and 0 <= t_x <= T")
    if not (x > 0).any():
        raise ValueError("fitting needs customers with repeat purchases")
    return rows


def newton_from_sample(objective, rows: Distinct, start, *, every: int = _SAMPLE_EVERY) -> tuple[np.ndarray, float]:
    """`newton` on all rows, started from a rough fit on a sample of them.

    Far from the optimum Newton needs several steps; taken on 1/`every` of the rows they
    cost a fraction of one full evaluation, and the full fit then needs only the last
    few steps of quadratic convergence.
    """
    if len(rows.weights) >= _SAMPLE_MIN_ROWS:
        try:
            start, _ = newton(objective(rows.sample(every)), start, gtol=_SAMPLE_GTOL)
        except (ArithmeticError, ValueError):  # a degenerate sample: start from the given point
            pass
    return newton(objective(rows), start)


def newton(evaluate, start, *, gtol: float = 1e-9, max_iterations: int = 200) -> tuple[np.ndarray, float]:
    """(The parameters minimising a negative log-likelihood, its minimum), by Newton steps
    over the parameters' logarithms.

    `evaluate(log_params)` returns the negative log-likelihood, its gradient and Hessian.
    Where the Hessian is not positive definite (far from the optimum) its eigenvalues are
    floored, so every step goes downhill; steps are capped and halved until they decrease
    the objective. Near the optimum Newton converges quadratically: a handful of
    evaluations instead of L-BFGS's dozens. Stops when every gradient component is
    below `gtol` (as L-BFGS-B's pgtol) or a step no longer changes the parameters.
    """
    theta = np.log(np.asarray(start, dtype=np.float64))
    value, gradient, hessian = evaluate(theta)
    if not np.isfinite(value):
        raise ArithmeticError("the likelihood is not finite at the start")
    for _ in range(max_iterations):
        if np.abs(gradient).max() <= gtol:
            break
        eigenvalues, vectors = np.linalg.eigh(hessian)
        floor = max(1e-8, 1e-6 * np.abs(eigenvalues).max())
        step = -vectors @ ((vectors.T @ gradient) / np.maximum(eigenvalues, floor))
        step *= min(1.0, _MAX_STEP / np.abs(step).max())
        for _ in range(60):
            trial = evaluate(theta + step)
            # the slack lets rounding noise in the sums pass once the decrease is below it
            if np.isfinite(trial[0]) and trial[0] <= value + 1e-4 * (gradient @ step) + 1e-14 * abs(value):
                break
            step = step / 2
        else:
            if np.abs(gradient).max() <= 1e-6:  # as close as the objective's rounding lets us get
                break
            raise ArithmeticError("fit did not converge: no step decreases the objective")
        theta = theta + step
        value, gradient, hessian = trial
        if np.abs(step).max() <= 1e-13:
            break
    else:
        raise ArithmeticError("fit did not converge within the iteration limit")
    return np.exp(theta), value
