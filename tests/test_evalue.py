"""E-values: VanderWeele & Ding (2017) examples, EValue::evalues.MD example, an independently
written formula, symmetry and the engine summary."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.methods.sensitivity.evalue import evalue_ci, evalue_diff_means, evalue_rr, evalue_smd, evalue_summary


def e_formula(rr, true=1.0):
    """Written independently: E = RR + sqrt(RR (RR - 1)) on the ratio moved away from 1."""
    x = rr / true
    if x < 1:
        x = 1 / x
    return x + math.sqrt(x * x - x)


def test_vanderweele_ding_2017_examples():
    # breastfeeding and infant death: RR 3.9 (95% CI 1.8 to 8.7) -> E = 7.26, CI 3.02
    assert evalue_rr(3.9) == pytest.approx(7.26, abs=0.005)
    assert evalue_ci(3.9, 1.8, 8.7) == pytest.approx(3.0, abs=0.005)
    assert evalue_rr(1.8) == pytest.approx(3.0, abs=0.005)


def test_evalues_md_package_example():
    # EValue::evalues.MD(0.5, 0.25): RR 1.576 (1.010, 2.460), E-values 2.529 and 1.109
    r = evalue_smd(0.5, 0.25)
    assert r["rr"] == pytest.approx(math.exp(0.455))
    assert r["rr_low"] == pytest.approx(math.exp(0.455 - 0.445))
    assert r["rr_high"] == pytest.approx(math.exp(0.455 + 0.445))
    assert r["evalue_estimate"] == pytest.approx(2.529, abs=5e-4)
    assert r["evalue_ci"] == pytest.approx(1.111, abs=5e-3)


@settings(max_examples=100, deadline=None)
@given(rr=st.floats(0.05, 20), true=st.floats(0.2, 5))
def test_matches_independent_formula_and_is_symmetric(rr, true):
    assert evalue_rr(rr, true_rr=true) == pytest.approx(e_formula(rr, true), rel=1e-12)
    assert evalue_rr(1 / rr, true_rr=1 / true) == pytest.approx(evalue_rr(rr, true_rr=true), rel=1e-12)
    assert evalue_rr(rr, true_rr=true) >= 1


def test_rr_below_one_inverted():
    assert evalue_rr(0.5) == pytest.approx(evalue_rr(2.0))
    assert evalue_rr(1.0) == 1.0
    assert evalue_ci(0.5, 0.3, 0.8) == pytest.approx(e_formula(0.8))  # upper limit is nearer 1


def test_ci_including_null_or_true_is_one():
    assert evalue_ci(1.5, 0.9, 2.5) == 1.0
    assert evalue_ci(0.7, 0.4, 1.2) == 1.0
    assert evalue_ci(3.0, 2.0, 4.0, true_rr=2.5) == 1.0
    assert evalue_ci(3.0, 2.0, 4.0, true_rr=1.5) == pytest.approx(e_formula(2.0, 1.5))
    assert math.isnan(evalue_ci(3.0, None, 4.0))


def test_diff_means_true_mcid():
    # estimate 0 (null result), SD 20, MCID 9.25: how much confounding hides a benefit of one MCID?
    r = evalue_diff_means(0.0, 20.0, se=3.0, true=9.25)
    assert r["d"] == 0
    assert r["evalue_estimate"] == pytest.approx(e_formula(math.exp(0.91 * 9.25 / 20)))
    lo_rr, hi_rr = math.exp(-1.78 * 3 / 20), math.exp(1.78 * 3 / 20)
    assert r["rr_low"] == pytest.approx(lo_rr) and r["rr_high"] == pytest.approx(hi_rr)
    assert r["evalue_ci"] == pytest.approx(e_formula(hi_rr, math.exp(0.91 * 9.25 / 20)))
    c = evalue_diff_means(2.0, 20.0, ci=(-4.0, 8.0))
    assert c["rr_low"] == pytest.approx(math.exp(0.91 * -4 / 20)) and c["evalue_ci"] == 1.0


def test_summary_matches_pieces():
    rng = np.random.default_rng(1)
    yt, yc = rng.normal(4, 18, 51), rng.normal(0, 22, 51)
    yt[:3] = np.nan
    s = evalue_summary(yt, yc, mcid=9.25)
    a, b = yt[~np.isnan(yt)], yc
    sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    est = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert s["smd"] == pytest.approx(est / sd)
    assert s["evalue_estimate"] == pytest.approx(e_formula(math.exp(0.91 * est / sd)))
    assert s["evalue_mcid"] == pytest.approx(e_formula(math.exp(0.91 * est / sd), math.exp(0.91 * 9.25 / sd)))
    ref = evalue_smd(est / sd, se / sd, true_d=9.25 / sd)
    assert s["evalue_mcid_ci"] == pytest.approx(ref["evalue_ci"])
    assert all(math.isnan(v) for v in evalue_summary([1.0], [2.0, 3.0], mcid=1).values())


@pytest.mark.parametrize("call, match", [
    (lambda: evalue_rr(-1), "rr"),
    (lambda: evalue_rr(0), "rr"),
    (lambda: evalue_rr("x"), "rr"),
    (lambda: evalue_rr(2, true_rr=0), "true_rr"),
    (lambda: evalue_ci(2, 2.5, 3), "lo <= rr <= hi"),
    (lambda: evalue_smd(0.3, -0.1), "se"),
    (lambda: evalue_smd(float("nan")), "d"),
    (lambda: evalue_diff_means(1, 0), "sd"),
    (lambda: evalue_diff_means(1, 2, ci=(1.5, 3)), "ci"),
    (lambda: evalue_diff_means(1, 2, ci=3), "ci"),
    (lambda: evalue_summary([1, 2], [3, 4], mcid=-1), "mcid"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
