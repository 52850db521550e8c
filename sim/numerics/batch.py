"""`fit_logit_binary` for a chunk of B problems at once, compiled (numba): the PS fits of the
batched analysis (sim.methods.batched). Its numbers are fit_logit_binary's; the problems where
fit_logit_binary would leave its regular path get a status instead, for the caller to fit them
with the reference."""

from __future__ import annotations

import math

import numpy as np

from sim.numerics import SEPARATION_ETA, SINGULAR_RTOL


#: why fit_logit_binary_batch leaves a problem to fit_logit_binary (its status codes; 0: fitted)
BATCH_FIT_STATUS = {1: "single outcome class", 2: "constant covariate", 3: "singular Hessian",
                    4: "no convergence", 5: "separation"}


def fit_logit_binary_batch(X: np.ndarray, y: np.ndarray, *, max_iter: int = 50,
                           tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """`fit_logit_binary` for B problems at once (X: (B, n, p), y: (B, n) of 0/1), compiled
    (numba): the same standardisation, start, damped Newton steps and stopping rule, with a
    Cholesky solve in place of the eigen-decomposition. Returns the linear predictors (B, n) and a
    status per problem: 0 for a regular fit (agreeing with fit_logit_binary to ~1e-13), otherwise
    a BATCH_FIT_STATUS code, for the problems the caller must fit with fit_logit_binary (where it
    would use a pseudo-inverse, flag separation, or not converge). Each problem is fitted on its
    own, so the result does not depend on B."""
    return _batch_fit_kernel()(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                               int(max_iter), float(tol), SINGULAR_RTOL, SEPARATION_ETA)


_BATCH_FIT: list = []


def _batch_fit_kernel():
    """The compiled kernel, built on first use (numba is imported only by the processes that fit
    batches) and cached on disk by numba."""
    if not _BATCH_FIT:
        from sim.numerics.jit import numba

        g = globals()
        for name in ("_loglik_reusing", "_linear", "_solve_spd"):
            if not hasattr(g[name], "py_func"):
                g[name] = numba.njit(cache=True)(g[name])
        _BATCH_FIT.append(numba.njit(cache=True)(_fit_logit_batch))
    return _BATCH_FIT[0]


def _loglik_reusing(eta, y, e):
    """Log-likelihood at eta; e receives exp(-|eta|), which the next Newton step reuses."""
    s = 0.0
    for i in range(eta.size):
        ei = math.exp(-abs(eta[i]))
        e[i] = ei
        x = -eta[i] if y[i] > 0 else eta[i]
        s -= max(x, 0.0) + math.log1p(ei)
    return s


def _linear(Z, beta):
    n, q = Z.shape
    eta = np.zeros(n)
    for i in range(n):
        s = 0.0
        for j in range(q):
            s += Z[i, j] * beta[j]
        eta[i] = s
    return eta


def _solve_spd(H, g, rtol):
    """H^-1 g by Cholesky; empty when H is not safely non-singular: when its condition number may
    exceed 1/rtol, where fit_logit_binary would switch to a pseudo-inverse (bounded through
    ||H||_F ||H^-1||_F >= cond(H), so only clearly regular Hessians pass)."""
    q = g.size
    L = np.zeros((q, q))
    for j in range(q):
        s = H[j, j]
        for k in range(j):
            s -= L[j, k] ** 2
        if not s > 0.0:
            return np.empty(0)
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, q):
            t = H[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / L[j, j]
    inv = np.zeros((q, q))  # H^-1, column by column
    step = np.zeros(q)
    for c in range(q + 1):
        rhs = np.zeros(q)
        if c < q:
            rhs[c] = 1.0
        else:
            rhs[:] = g
        for i in range(q):  # L y = rhs
            t = rhs[i]
            for k in range(i):
                t -= L[i, k] * rhs[k]
            rhs[i] = t / L[i, i]
        for i in range(q - 1, -1, -1):  # L' x = y
            t = rhs[i]
            for k in range(i + 1, q):
                t -= L[k, i] * rhs[k]
            rhs[i] = t / L[i, i]
        if c < q:
            inv[:, c] = rhs
        else:
            step = rhs
    if math.sqrt(np.sum(H * H)) * math.sqrt(np.sum(inv * inv)) * rtol >= 1.0:
        return np.empty(0)
    return step


def _fit_logit_batch(X, y, max_iter, tol, rtol, sep_eta):
    """fit_logit_binary's Newton for each of B problems (compiled; see fit_logit_binary_batch)."""
    B, n, p = X.shape
    q = p + 1
    eta_out = np.zeros((B, n))
    status = np.zeros(B, np.int8)
    Z = np.empty((n, q))
    for b in range(B):
        yb = y[b]
        ybar = 0.0
        for i in range(n):
            ybar += yb[i]
        ybar /= n
        if ybar <= 0.0 or ybar >= 1.0:
            status[b] = 1
            continue
        for i in range(n):
            Z[i, 0] = 1.0
        for j in range(p):
            mu = 0.0
            for i in range(n):
                mu += X[b, i, j]
            mu /= n
            v = 0.0
            for i in range(n):
                v += (X[b, i, j] - mu) ** 2
            sd = math.sqrt(v / n)
            if sd <= 1e-12 * max(1.0, abs(mu)):
                status[b] = 2
                break
            for i in range(n):
                Z[i, j + 1] = (X[b, i, j] - mu) / sd
        if status[b]:
            continue
        beta = np.zeros(q)
        beta[0] = math.log(ybar / (1.0 - ybar))
        eta = _linear(Z, beta)
        e = np.empty(n)
        e_new = np.empty(n)
        ll = _loglik_reusing(eta, yb, e)
        converged = False
        for _ in range(max_iter):
            g = np.zeros(q)
            H = np.zeros((q, q))
            for i in range(n):
                m = 1.0 / (1.0 + e[i]) if eta[i] >= 0 else e[i] / (1.0 + e[i])  # expit(eta)
                r = yb[i] - m
                w = m * (1.0 - m)
                for j in range(q):
                    g[j] += Z[i, j] * r
                    wz = w * Z[i, j]
                    for k in range(j + 1):
                        H[j, k] += wz * Z[i, k]
            for j in range(q):
                for k in range(j):
                    H[k, j] = H[j, k]
            step = _solve_spd(H, g, rtol)
            if step.size == 0:
                status[b] = 3
                break
            frac = 1.0
            beta_new = beta
            eta_new = eta
            ll_new = ll
            for _h in range(30):
                beta_new = beta + frac * step
                eta_new = _linear(Z, beta_new)
                ll_new = _loglik_reusing(eta_new, yb, e_new)
                if ll_new >= ll - 1e-12 * (1.0 + abs(ll)):
                    break
                frac *= 0.5
            max_step = np.max(np.abs(frac * step))
            d_ll = ll_new - ll
            beta, eta, ll = beta_new, eta_new, ll_new
            e, e_new = e_new, e
            if max_step < 1e-8 or (abs(d_ll) <= tol * (1.0 + abs(ll)) and max_step < 1e-4):
                converged = True
                break
        if status[b]:
            continue
        if not converged:
            status[b] = 4
            continue
        if np.max(np.abs(eta)) > sep_eta:
            status[b] = 5
            continue
        eta_out[b] = eta
    return eta_out, status
