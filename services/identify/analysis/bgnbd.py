"""BG/NBD (Fader, Hardie & Lee 2005): purchases at rate λ ~ Gamma(r, α) while alive;
after each repeat purchase the customer drops out with probability p ~ Beta(a, b)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, hyp2f1, polygamma

from ._fitting import Distinct, as_arrays, distinct_rows, newton_from_sample, summaries


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
    return (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + betaln(a, b + x)
        - betaln(a, b)
        + np.logaddexp(-(r + x) * np.log(alpha + T), dropped)
    )


_CHUNK = 32_768  # rows per block of array operations: 9 buffers of it fit in a core's L2 cache


class _Objective:
    """The mean negative log-likelihood over the distinct rows, with its gradient and Hessian
    in log-parameters θ = (ln r, ln α, ln a, ln b), for Newton steps.

    Terms of x alone run on the distinct x values with their summed weights, logarithms of
    α + T and α + t_x on the distinct T and t_x values; per row only the mixture remains:
    ln[e^A + e^D] = A + softplus(z) with A = −(r+x) ln(α+T), z = D − A
    = ln a − ln(b+x−1) + (r+x)·gap, gap = ln(α+T) − ln(α+t_x). With σ = sigmoid(z),
    ∇ softplus(z) = σ ∇z and ∇² softplus(z) = σ ∇²z + σ(1−σ) ∇z ∇zᵀ, where ∇z has the
    row terms (r·gap, (r+x)·h, 1, −b/(b+x−1)), h = α/(α+T) − α/(α+t_x). One-time buyers
    (z = −∞) add nothing to the row sums and are left out of them.
    """

    def __init__(self, rows: Distinct):
        (self.xs, self.tx_levels, self.T_levels), codes = rows.levels, rows.codes
        self.weights = rows.weights / rows.weights.sum()  # the mean keeps the objective O(1)
        x_code = codes[0]
        self.x_weights = np.bincount(x_code, weights=self.weights, minlength=len(self.xs))
        # Σ w·f(T) and Σ w·x·f(T) are sums over the distinct T values with these weights
        self.T_weights = np.bincount(codes[2], weights=self.weights, minlength=len(self.T_levels))
        self.T_x_weights = np.bincount(codes[2], weights=self.weights * rows.columns[0], minlength=len(self.T_levels))
        # the rows of repeat buyers, ordered by x so per-x sums are sums of contiguous runs
        keep = np.flatnonzero(self.xs[x_code] > 0)
        keep = keep[np.argsort(x_code[keep], kind="stable")]
        self.x_code, self.tx_code, self.T_code = (c[keep] for c in codes)
        self.x, self.w = self.xs[self.x_code], self.weights[keep]
        self.present, runs = np.unique(self.x_code, return_index=True)  # x levels with rows, where their runs start
        self.chunks = [slice(start, min(start + _CHUNK, len(keep))) for start in range(0, len(keep), _CHUNK)]
        self.chunk_runs = {}  # per chunk: where its runs of one x start, and their x levels
        for chunk in self.chunks:
            starts = np.union1d(runs[(runs > chunk.start) & (runs < chunk.stop)], [chunk.start])
            self.chunk_runs[chunk.start] = starts - chunk.start, self.x_code[starts]
        self.buffers = np.empty((9, _CHUNK))

    def _per_x(self, r, alpha, a, b):
        """Value, gradient and Hessian (in natural parameters) of the terms of x alone."""
        xs, wx = self.xs, self.x_weights
        value = wx @ (gammaln(r + xs) + betaln(a, b + xs)) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
        ab, abx = digamma(a + b), digamma(a + b + xs)
        gradient = np.array(
            [
                wx @ digamma(r + xs) - digamma(r) + np.log(alpha),
                r / alpha,
                ab - wx @ abx,
                wx @ (digamma(b + xs) - abx) - digamma(b) + ab,
            ]
        )
        ab1, abx1 = polygamma(1, a + b), wx @ polygamma(1, a + b + xs)
        hessian = np.zeros((4, 4))
        hessian[0, 0] = wx @ polygamma(1, r + xs) - polygamma(1, r)
        hessian[0, 1] = hessian[1, 0] = 1.0 / alpha
        hessian[1, 1] = -r / alpha**2
        hessian[2, 2] = hessian[2, 3] = hessian[3, 2] = ab1 - abx1
        hessian[3, 3] = wx @ polygamma(1, b + xs) - abx1 - polygamma(1, b) + ab1
        return value, gradient, hessian

    def _per_T(self, r, alpha):
        """Value, gradient and Hessian (in natural parameters) of −(r+x) ln(α+T) summed over rows."""
        log_T, inverse_T = np.log(alpha + self.T_levels), 1.0 / (alpha + self.T_levels)
        scaled = r * self.T_weights + self.T_x_weights  # Σ w·(r+x) per T
        hessian = np.zeros((4, 4))
        hessian[0, 1] = hessian[1, 0] = -(self.T_weights @ inverse_T)
        hessian[1, 1] = scaled @ inverse_T**2
        gradient = np.array([-(self.T_weights @ log_T), -(scaled @ inverse_T), 0.0, 0.0])
        return -(scaled @ log_T), gradient, hessian

    def _rows(self, r, alpha, a, b):
        """Value, gradient and Hessian (in log-parameters) of Σ w·softplus(z) over the repeat buyers' rows."""
        xs = self.xs
        with np.errstate(divide="ignore", invalid="ignore"):  # x = 0 has no rows here
            log_odds, c = np.log(a) - np.log(b + xs - 1), -b / (b + xs - 1)  # z's term of x; ∂ of it in ln b
        tables = [
            (f(self.T_levels), f(self.tx_levels))
            for f in (
                lambda t: np.log(alpha + t),
                lambda t: alpha / (alpha + t),
                lambda t: alpha * t / (alpha + t) ** 2,
            )
        ]
        sums = np.zeros(8)  # value, v·gap, v·h, v·rh, v·rxk, ug·gap, ug·rh, urh·rh
        by_x = np.zeros((4, len(xs)))  # per x: Σ v, u, ug, urh
        for chunk in self.chunks:
            sums += self._chunk(chunk, r, log_odds, tables, by_x)
        value, v_gap, v_h, v_rh, v_k, ug_gap, ug_rh, urh_rh = sums
        v_x, u_x, ug_x, urh_x = by_x[:, self.present]
        xs, c = xs[self.present], c[self.present]
        gradient = np.array([r * v_gap, v_rh, v_x.sum(), v_x @ c])
        hessian = np.empty((4, 4))
        hessian[0, :2] = r * r * ug_gap + r * v_gap, r * (ug_rh + v_h)
        hessian[1, 1] = urh_rh + v_k
        hessian[0, 2:] = r * ug_x.sum(), r * (ug_x @ c)
        hessian[1, 2:] = urh_x.sum(), urh_x @ c
        hessian[2, 2:] = u_x.sum(), u_x @ c
        hessian[3, 3] = u_x @ c**2 + v_x @ (c * (xs - 1) / (b + xs - 1))  # ∂²z/∂(ln b)² = −b(x−1)/(b+x−1)²
        hessian = np.triu(hessian) + np.triu(hessian, 1).T
        return value, gradient, hessian

    def _chunk(self, chunk: slice, r, log_odds, tables, by_x) -> np.ndarray:
        """The row sums of one chunk of rows (added to `by_x` per x).

        The per-row arrays live in small buffers reused for every chunk and evaluation
        (`out=`): they stay in cache, and fresh arrays of a million rows cost more in page
        faults than the arithmetic itself.
        """
        n = chunk.stop - chunk.start
        gap, h, k, rx, z, e, s, u, tmp = (buffer[:n] for buffer in self.buffers)
        w, T_code, tx_code = self.w[chunk], self.T_code[chunk], self.tx_code[chunk]
        for out, (at_T, at_tx) in zip((gap, h, k), tables):  # f(α, T) − f(α, t_x); clip: no bounds checks or buffering
            np.take(at_T, T_code, out=out, mode="clip")
            out -= np.take(at_tx, tx_code, out=tmp, mode="clip")
        np.add(self.x[chunk], r, out=rx)
        np.take(log_odds, self.x_code[chunk], out=z, mode="clip")
        z += np.multiply(rx, gap, out=tmp)
        np.exp(np.negative(np.abs(z, out=e), out=e), out=e)  # e = exp(−|z|): softplus and sigmoid, stable for any z
        value = w @ np.maximum(z, 0.0, out=tmp) + w @ np.log1p(e, out=s)  # softplus(z) = max(z, 0) + ln(1 + e)
        np.reciprocal(np.add(e, 1.0, out=s), out=s)  # sigmoid(|z|)
        np.multiply(np.multiply(s, s, out=u), e, out=u)
        u *= w  # w·σ(1−σ) = w·e/(1+e)²
        v = np.copysign(np.subtract(s, 0.5, out=tmp), z, out=tmp)
        v += 0.5
        v *= w  # w·σ(z)
        rh = np.multiply(rx, h, out=z)
        k *= rx
        ug, urh = np.multiply(u, gap, out=e), np.multiply(u, rh, out=s)
        runs, levels = self.chunk_runs[chunk.start]
        for total, a in zip(by_x, (v, u, ug, urh)):
            total[levels] += np.add.reduceat(a, runs)
        return np.array([value, v @ gap, v @ h, v @ rh, v @ k, ug @ gap, ug @ rh, urh @ rh])

    def __call__(self, log_params):
        params = np.exp(log_params)
        r, alpha, a, b = params
        value, gradient, hessian = (p + q for p, q in zip(self._per_x(r, alpha, a, b), self._per_T(r, alpha)))
        # natural → log-parameters: ∇θ = p∇, ∇²θ = diag(p) ∇² diag(p) + diag(p∇)
        gradient = gradient * params
        hessian = hessian * np.outer(params, params) + np.diag(gradient)
        row_value, row_gradient, row_hessian = self._rows(r, alpha, a, b)
        return -(value + row_value), -(gradient + row_gradient), -(hessian + row_hessian)


def fit_bgnbd(x, t_x, T) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters for repeat purchases x, last purchase t_x and age T."""
    rows = summaries(x, t_x, T)
    x, _, T = rows.columns
    rate = (rows.weights @ x) / (rows.weights @ T)  # purchases per time unit: a scale-free start for α
    params, mean_loss = newton_from_sample(_Objective, rows, np.array([1.0, 1.0 / rate, 1.0, 1.0]))
    r, alpha, a, b = map(float, params)
    return BGNBDParams(r, alpha, a, b, log_likelihood=float(-mean_loss * rows.weights.sum()))


def bgnbd_probability_alive(params: BGNBDParams, x, t_x, T) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + [x>0] a/(b+x−1) ((α+T)/(α+t_x))^(r+x))."""
    x, t_x, T = as_arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    with np.errstate(over="ignore"):  # odds beyond a float's range: P(alive) is 0, as 1 / (1 + inf) gives
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.where(x > 0, log_odds, 0.0))), 1.0)


def bgnbd_expected_purchases(params: BGNBDParams, t, x, t_x, T) -> np.ndarray:
    """E[repeat purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10).

    (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive)
    """
    x, t_x, T = as_arrays(x, t_x, T)
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    horizon = alpha + T + t
    future = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(horizon))) * hyp2f1(
        r + x, b + x, a + b + x - 1, t / horizon
    )
    return (a + b + x - 1) / (a - 1) * future * bgnbd_probability_alive(params, x, t_x, T)


def bgnbd_expected_purchases_new(params: BGNBDParams, t) -> np.ndarray:
    """E[repeat purchases in (0, t]] of a customer just acquired (FHL 2005, eq. 9)."""
    t = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


_CELLS_PER_CHUNK = 2_000_000  # (x, T) pairs × time steps evaluated at once; bounds memory
_DISTINCT_FROM = 64  # customers


def bgnbd_discounted_purchases(params: BGNBDParams, x, t_x, T, times, discount) -> np.ndarray:
    """Σₖ (E[Y(tₖ)] − E[Y(tₖ₋₁)]) · discountₖ per customer, t₀ = 0 < t₁ < ... (`times` holds t₁...).

    E[Y(t)] = C(x) · [1 − G(x, T, t)] · P(alive), so each increment is C · P · (G(tₖ₋₁) − G(tₖ)):
    the ₂F₁ in G runs once per distinct (x, T) pair and time, not per customer.
    """
    x, t_x, T = as_arrays(x, t_x, T)
    times, discount = as_arrays(times, discount)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    inverse: slice | np.ndarray
    if len(x) <= _DISTINCT_FROM:  # a few customers (a per-purchase re-score): grouping costs more than it saves
        px, pT, inverse = x, T, slice(None)
    else:
        pairs = distinct_rows(x, T)
        (px, pT), inverse = pairs.columns, pairs.inverse
    per_pair = np.empty(len(px))
    chunk = max(1, _CELLS_PER_CHUNK // len(times))
    for start in range(0, len(px), chunk):  # chunks of pairs, each one array operation
        rows = slice(start, start + chunk)
        xs, Ts = px[rows, None], pT[rows, None]
        horizon = alpha + Ts + times[None, :]
        g = np.exp((r + xs) * (np.log(alpha + Ts) - np.log(horizon))) * hyp2f1(
            r + xs, b + xs, a + b + xs - 1, times / horizon
        )
        per_pair[rows] = np.diff(g, axis=1, prepend=1.0) @ -discount
    scale = (a + b + x - 1) / (a - 1) * bgnbd_probability_alive(params, x, t_x, T)
    return scale * per_pair[inverse]
