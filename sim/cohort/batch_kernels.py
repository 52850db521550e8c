"""The batched generator's compiled parts: a chunk's latents and its outcomes.

Why: a chunk of B replicates is a few hundred numpy passes over arrays of B x N values, which
leaves a replicate costing more in memory traffic than in arithmetic. Compiled loops do the same
operations in the same order on each value, so the cohorts equal `generate`'s to the bit
(tests/test_batched.py):
- draws: numba implements numpy's Generator methods with numpy's own algorithms on the same bit
  generator, so a compiled loop draws what `CohortModel.draw` draws, in about half its time and
  one call per replicate instead of nine. Each latent array holds the chunk's replicates one after
  the other (row i of replicate b is row b * n + i), stored column by column;
- outcomes: `CohortModel.outcome_block`'s `outcome_latents`, `OutcomeModel.observe`, the
  effect's latent shift and U's term, masked by the deaths and missed visits it is given, one
  patient at a time; only additions, products, divisions, min/max, square roots of constants and
  rounding to even, which IEEE arithmetic defines to the bit (numba does not contract them into
  fused multiply-adds).
"""

from __future__ import annotations

import numpy as np

from sim.cohort import model as M
from sim.cohort.mechanism import UNIFORM, Latents
from sim.numerics.jit import numba

NAN = float("nan")


@numba.njit(cache=True)
def _fill(rng, flats, widths, uniform, b, n):
    """The next draws of rng for replicate b, in order: for each array of `flats`, n patients of
    widths[s] values each, uniform or standard normal as uniform[s] says. Patient i's value j goes
    to flat[j * rows + b * n + i]: each array is stored column by column (see draw_batch)."""
    for s in range(len(flats)):
        flat, w = flats[s], widths[s]
        rows = flat.size // max(w, 1)
        if uniform[s]:
            for i in range(b * n, (b + 1) * n):
                for j in range(w):
                    flat[j * rows + i] = rng.random()
        else:
            for i in range(b * n, (b + 1) * n):
                for j in range(w):
                    flat[j * rows + i] = rng.standard_normal()


def draw_batch(model: M.CohortModel, n: int, rngs, noise: bool) -> tuple[Latents, np.ndarray | None]:
    """Latents of len(rngs) replicates of n patients, stacked replicate by replicate, as
    CohortModel.draw draws them from each rng; with `noise`, also U's N(0, 1) noise per patient
    (unmeasured.draw_noise), drawn after the latents. Each latent array is a view of one stored
    column by column (its last axes first, patients last), so that a column (lat.others[:, j], an
    outcome's visit) is contiguous: the covariates and outcomes read them at memory speed, and
    outcome_block's patients-last layout is the array itself, not a copy. The values are the same."""
    shapes = model.latent_shapes(n)
    B = len(rngs)
    stored = {k: np.empty((*shape[1:], B * n)) for k, shape in shapes.items()}
    if noise:
        stored["noise"] = np.empty(B * n)
    flats = tuple(a.reshape(-1) for a in stored.values())  # views: the arrays are C-contiguous
    widths = np.array([int(np.prod(a.shape[:-1])) for a in stored.values()], dtype=np.int64)
    uniform = np.array([k in UNIFORM for k in stored], dtype=np.bool_)
    for b, rng in enumerate(rngs):
        _fill(rng, flats, widths, uniform, b, n)
    views = {k: np.moveaxis(a, -1, 0) for k, a in stored.items()}  # (B * n, *columns)
    return Latents(**{k: views[k] for k in shapes}), views.get("noise")


@numba.njit(cache=True)
def _snap(x, lower, upper, step):
    """scales.snap of one value: np.clip, np.round (to even) and np.round(y, 10) = rint(y * 1e10) / 1e10."""
    y = lower + np.rint((min(max(x, lower), upper) - lower) / step) * step
    return min(np.rint(y * 1e10) / 1e10, upper)


@numba.njit(cache=True)
def _outcomes(vT, P, mult, coef, c, bounds, shift, term, has_term, alive0, alive1, seen, treated,
              pre, y0, y1, obs, d0, d1, delta):
    """Outcome o of patient i: baseline pre[o, i] and, per follow-up k, the potential outcomes
    y0/y1[o, k, i] (NaN if dead under that arm), the observed obs[o, k, i] (NaN if unseen) and
    the changes d0, d1, delta (improvement direction); vT[o, visit, i] are the latent normals.
    coef[o, t] = (loc, scale, lambda, sqrt(1 - lambda^2), rho, sqrt(1 - rho^2)) per visit t
    (baseline first; rho unused there); c = (partial correlation, sqrt(1 - it^2));
    bounds[o] = (lower, upper, step, direction). Loops run over patients innermost, on
    contiguous rows."""
    O, V, N = vT.shape
    u = np.empty(N)
    for o in range(O):
        lower, upper, step, d = bounds[o, 0], bounds[o, 1], bounds[o, 2], bounds[o, 3]
        a = coef[o, 0]
        base = vT[o, 0]
        for i in range(N):
            pre[o, i] = _snap(a[0] + a[1] * (a[2] * P[i] + a[3] * base[i]), lower, upper, step)
        for k in range(V - 1):
            a = coef[o, k + 1]
            vk = vT[o, k + 1]
            s = shift[o, k]
            for i in range(N):
                u[i] = vk[i] if k == 0 else c[0] * u[i] + c[1] * vk[i]
                vt = a[4] * base[i] + a[5] * u[i]
                yt = a[0] + a[1] * (a[2] * P[i] + a[3] * vt)
                if has_term[o, k]:
                    yt = yt + d * term[o, k, i]
                z0 = _snap(yt, lower, upper, step)
                z1 = _snap(yt + s * mult[i], lower, upper, step) if s != 0.0 else z0
                z0 = z0 if alive0[k, i] else NAN
                z1 = z1 if alive1[k, i] else NAN
                zo = (z1 if treated[i] else z0) if seen[k, i] else NAN
                y0[o, k, i] = z0
                y1[o, k, i] = z1
                obs[o, k, i] = zo
                d0[o, k, i] = (z0 - pre[o, i]) * d
                d1[o, k, i] = (z1 - pre[o, i]) * d
                delta[o, k, i] = (zo - pre[o, i]) * d


def outcome_block(model: M.CohortModel, latent_shift, P, mult, v, terms, alive0, alive1, observed, treated):
    """CohortModel.outcome_block's twin, compiled: the same arrays to the bit."""
    O, T, N = len(model.outcomes), len(model.follow_up), P.shape[0]
    coef = np.empty((O, T + 1, 6))
    bounds = np.empty((O, 4))
    shift = np.zeros((O, T))
    has_term = np.zeros((O, T), dtype=np.bool_)
    term = np.zeros((O, T, N) if terms else (O, T, 0))
    for o, out in enumerate(model.outcomes):
        for k, t in enumerate(model.times):
            lam = out.loading[t]
            r = out.rho[t] if k else 0.0
            coef[o, k] = (out.loc[t], out.scale[t], lam, np.sqrt(1 - lam**2), r, np.sqrt(1 - r**2))
        bounds[o] = (out.lower, out.upper, out.step, out.direction())
        for k, t in enumerate(model.follow_up):
            shift[o, k] = out.direction() * latent_shift.get((out.name, t), 0.0)
            if (out.name, t) in terms:
                has_term[o, k] = True
                term[o, k] = terms[(out.name, t)]
    cc = model.partial_corr_m1_m6
    pre = np.empty((O, N))
    y0, y1, obs, d0, d1, delta = (np.empty((O, T, N)) for _ in range(6))
    _outcomes(np.ascontiguousarray(v.transpose(1, 2, 0)), P, mult, coef, np.array([cc, np.sqrt(1 - cc**2)]), bounds, shift, term,
              has_term, alive0, alive1, observed, treated, pre, y0, y1, obs, d0, d1, delta)
    return pre, y0, y1, obs, d0, d1, delta
