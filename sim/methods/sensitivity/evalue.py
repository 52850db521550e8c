"""E-values (VanderWeele & Ding 2017, Ann Intern Med 167:268; R package EValue).

Why: the E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both treatment and outcome to move the observed estimate to
a given true value. Reviewers ask for it; here it is checked against the synthetic truth.

For a risk ratio RR (relative to a true value RR0, r = RR/RR0, inverted when below 1):
E = r + sqrt(r (r - 1)). A standardised mean difference d maps to RR ≈ exp(0.91 d) and its CI to
exp(0.91 d ± 1.78 se) (VanderWeele 2017, Epidemiology 28:e58; as ``EValue::evalues.MD``).
The CI's E-value is that of the limit nearer the true value, 1 if the CI contains it.
"""

from __future__ import annotations

import math

from sim.methods.outcomes import _unpaired

__all__ = ["evalue_rr", "evalue_ci", "evalue_smd", "evalue_diff_means", "evalue_summary"]

NAN = float("nan")
MD_TO_LOGRR = 0.91  # log RR per SD (Chinn 2000 / VanderWeele 2017 conversion)
MD_CI_FACTOR = 1.78  # 0.91 x 1.96, rounded as in EValue


def _positive(x, name) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {x!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {x!r}")
    return v


def _finite(x, name) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number; got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {x!r}")
    return v


def _e(r: float) -> float:
    r = max(r, 1.0 / r)
    return r + math.sqrt(r * (r - 1.0))


def evalue_rr(rr, *, true_rr=1.0) -> float:
    """E-value of a risk ratio: confounding RR needed to move ``rr`` to ``true_rr``."""
    return _e(_positive(rr, "rr") / _positive(true_rr, "true_rr"))


def evalue_ci(rr, lo, hi, true_rr=1.0) -> float:
    """E-value of the CI limit nearer ``true_rr`` (1 if the CI contains it; NaN if that limit is None)."""
    rr = _positive(rr, "rr")
    true_rr = _positive(true_rr, "true_rr")
    lo = None if lo is None else _positive(lo, "lo")
    hi = None if hi is None else _positive(hi, "hi")
    if (lo is not None and lo > rr) or (hi is not None and hi < rr):
        raise ValueError(f"need lo <= rr <= hi; got lo={lo!r}, rr={rr!r}, hi={hi!r}")
    if rr == true_rr:
        return 1.0
    limit = lo if rr > true_rr else hi
    if limit is None:
        return NAN
    if (rr > true_rr and limit <= true_rr) or (rr < true_rr and limit >= true_rr):
        return 1.0
    return _e(limit / true_rr)


def evalue_smd(d, se=None, *, true_d=0.0) -> dict:
    """E-values for a standardised mean difference ``d`` (and its SE) against ``true_d``.

    Returns rr, rr_low, rr_high (approximate RR scale), evalue_estimate, evalue_ci.
    """
    d = _finite(d, "d")
    true_d = _finite(true_d, "true_d")
    if se is not None:
        se = _finite(se, "se")
        if se < 0:
            raise ValueError(f"se must be >= 0; got {se!r}")
    rr = math.exp(MD_TO_LOGRR * d)
    true_rr = math.exp(MD_TO_LOGRR * true_d)
    lo = hi = NAN
    e_ci = NAN
    if se is not None:
        lo = math.exp(MD_TO_LOGRR * d - MD_CI_FACTOR * se)
        hi = math.exp(MD_TO_LOGRR * d + MD_CI_FACTOR * se)
        e_ci = evalue_ci(rr, lo, hi, true_rr)
    return {"rr": rr, "rr_low": lo, "rr_high": hi,
            "evalue_estimate": evalue_rr(rr, true_rr=true_rr), "evalue_ci": e_ci}


def evalue_diff_means(estimate, sd, se=None, ci=None, *, true=0.0) -> dict:
    """E-values for a difference in means on the outcome scale, standardised by ``sd``.

    ``true`` is on the outcome scale too: ``true=mcid`` gives the confounding needed to move the
    estimate to a true benefit of one MCID. With ``ci=(low, high)`` the RR limits are
    exp(0.91 low/sd), exp(0.91 high/sd) instead of the SE-based ones.
    """
    estimate = _finite(estimate, "estimate")
    sd = _positive(sd, "sd")
    true = _finite(true, "true")
    se_d = None if se is None else _finite(se, "se") / sd
    out = {"d": estimate / sd, "se_d": NAN if se_d is None else se_d}
    out.update(evalue_smd(estimate / sd, se_d, true_d=true / sd))
    if ci is not None:
        try:
            c_lo, c_hi = ci
        except (TypeError, ValueError):
            raise ValueError(f"ci must be a (low, high) pair; got {ci!r}") from None
        c_lo, c_hi = _finite(c_lo, "ci low"), _finite(c_hi, "ci high")
        if not c_lo <= estimate <= c_hi:
            raise ValueError(f"ci must satisfy low <= estimate <= high; got {ci!r} for {estimate!r}")
        lo, hi = (math.exp(MD_TO_LOGRR * c / sd) for c in (c_lo, c_hi))
        out.update(rr_low=lo, rr_high=hi,
                   evalue_ci=evalue_ci(out["rr"], lo, hi, math.exp(MD_TO_LOGRR * true / sd)))
    return out


def evalue_summary(y_treated, y_control, *, mcid) -> dict[str, float]:
    """Per-replicate E-values for the engine: d = difference in mean change (Welch SE, NaNs
    dropped per arm) over the pooled SD sqrt((s1² + s0²)/2) of the change.

    evalue_estimate/evalue_ci: to explain the estimate/CI away (true = 0); evalue_mcid/
    evalue_mcid_ci: to move the estimate/CI to a true benefit of one MCID (1 if the CI contains it).
    """
    mcid = _positive(mcid, "mcid")
    a, b = _unpaired(y_treated, y_control)
    keys = ("smd", "evalue_estimate", "evalue_ci", "evalue_mcid", "evalue_mcid_ci")
    if a.size < 2 or b.size < 2:
        return dict.fromkeys(keys, NAN)
    v1, v0 = float(a.var(ddof=1)), float(b.var(ddof=1))
    sd = math.sqrt((v1 + v0) / 2.0)
    if not sd > 0:
        return dict.fromkeys(keys, NAN)
    est = float(a.mean() - b.mean())
    se = math.sqrt(v1 / a.size + v0 / b.size)
    null = evalue_diff_means(est, sd, se)
    shift = evalue_diff_means(est, sd, se, true=mcid)
    return {"smd": null["d"], "evalue_estimate": null["evalue_estimate"], "evalue_ci": null["evalue_ci"],
            "evalue_mcid": shift["evalue_estimate"], "evalue_mcid_ci": shift["evalue_ci"]}
