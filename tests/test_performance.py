"""Tests for sim.jobs.performance: every measure and MCSE against explicit formulas."""

import math

import numpy as np
import pandas as pd
import pytest

from sim.jobs.performance import mcse_reps_needed, summarise


def _get(res, measure, **keys):
    sel = res["measure"] == measure
    for k, v in keys.items():
        sel &= res[k] == v
    rows = res[sel]
    assert len(rows) == 1, (measure, keys, rows)
    return rows.iloc[0]


@pytest.fixture
def five():
    # Hand example: 5 replicates, truth varies per replicate.
    return pd.DataFrame({
        "estimate": [1.0, 2.0, 0.5, 1.5, 3.0],
        "truth": [1.0, 1.0, 1.0, 2.0, 2.0],
        "se": [0.5, 1.0, 0.8, 0.6, 1.2],
        "ci_low": [0.2, 1.1, -0.5, 0.4, 2.5],
        "ci_high": [1.8, 2.9, 1.5, 2.6, 3.5],
        "p_value": [0.01, 0.20, 0.04, 0.05, 0.001],
        "n_pairs": [10, 12, 11, 9, 13],
        "max_abs_smd": [0.05, 0.12, 0.08, 0.30, 0.02],
    })


def test_hand_example_values_and_mcse(five):
    res = summarise(five, by=[])
    n = 5
    est = [1.0, 2.0, 0.5, 1.5, 3.0]
    tru = [1.0, 1.0, 1.0, 2.0, 2.0]
    se = [0.5, 1.0, 0.8, 0.6, 1.2]
    d = [e - t for e, t in zip(est, tru)]  # 0, 1, -0.5, -0.5, 1
    # bias
    bias = sum(d) / n
    assert bias == pytest.approx(0.2)
    sd_d = math.sqrt(sum((x - bias) ** 2 for x in d) / (n - 1))
    r = _get(res, "bias")
    assert r["value"] == pytest.approx(bias) and r["mcse"] == pytest.approx(sd_d / math.sqrt(n)) and r["n"] == 5
    # empse
    m = sum(est) / n
    empse = math.sqrt(sum((x - m) ** 2 for x in est) / (n - 1))
    r = _get(res, "empse")
    assert r["value"] == pytest.approx(empse) and r["mcse"] == pytest.approx(empse / math.sqrt(2 * (n - 1)))
    # mse
    mse = sum(x * x for x in d) / n
    assert mse == pytest.approx(0.5)
    mse_mcse = math.sqrt(sum((x * x - mse) ** 2 for x in d) / (n * (n - 1)))
    r = _get(res, "mse")
    assert r["value"] == pytest.approx(mse) and r["mcse"] == pytest.approx(mse_mcse)
    # modelse
    se2 = [s * s for s in se]
    mean_se2 = sum(se2) / n
    modse = math.sqrt(mean_se2)
    var_se2 = sum((x - mean_se2) ** 2 for x in se2) / (n - 1)
    r = _get(res, "modelse")
    assert r["value"] == pytest.approx(modse)
    assert r["mcse"] == pytest.approx(math.sqrt(var_se2 / (4 * n * modse ** 2)))
    # relative error in model SE
    r = _get(res, "relerr_modelse")
    assert r["value"] == pytest.approx(100 * (modse / empse - 1))
    expected = 100 * (modse / empse) * math.sqrt(var_se2 / (4 * n * modse ** 4) + 1 / (2 * (n - 1)))
    assert r["mcse"] == pytest.approx(expected)
    # coverage: covered = [T, F (1.1>1), T, T, F (2.5>2)] -> 3/5
    r = _get(res, "coverage")
    assert r["value"] == pytest.approx(0.6)
    assert r["mcse"] == pytest.approx(math.sqrt(0.6 * 0.4 / 5))
    # rejection at 0.05: 0.01, 0.04, 0.001 -> 3/5 (0.05 itself is not < 0.05)
    r = _get(res, "rejection")
    assert r["value"] == pytest.approx(0.6)
    assert r["mcse"] == pytest.approx(math.sqrt(0.24 / 5))
    # extra means
    r = _get(res, "mean_n_pairs")
    assert r["value"] == pytest.approx(11.0)
    assert r["mcse"] == pytest.approx(math.sqrt(2.5) / math.sqrt(5))
    r = _get(res, "mean_max_abs_smd")
    assert r["value"] == pytest.approx(0.114)
    r = _get(res, "max_max_abs_smd")
    assert r["value"] == pytest.approx(0.30) and np.isnan(r["mcse"]) and r["n"] == 5
    assert list(res.columns) == ["measure", "value", "mcse", "n"]
    assert list(res["measure"]) == ["bias", "empse", "mse", "modelse", "relerr_modelse", "coverage",
                                    "rejection", "mean_n_pairs", "mean_max_abs_smd", "max_max_abs_smd"]


def test_alpha_changes_rejection(five):
    res = summarise(five, by=[], alpha=0.1)
    assert _get(res, "rejection")["value"] == pytest.approx(0.8)


def _independent(est, tru, se, lo, hi, p, alpha):
    """Straight numpy re-implementation of Morris et al. Table 6 (complete data)."""
    n = len(est)
    d = est - tru
    out = {}
    out["bias"] = (d.mean(), d.std(ddof=1) / np.sqrt(n))
    emp = est.std(ddof=1)
    out["empse"] = (emp, emp / np.sqrt(2 * (n - 1)))
    mse = np.mean(d ** 2)
    out["mse"] = (mse, np.sqrt(np.sum((d ** 2 - mse) ** 2) / (n * (n - 1))))
    mod = np.sqrt(np.mean(se ** 2))
    v = np.var(se ** 2, ddof=1)
    out["modelse"] = (mod, np.sqrt(v / (4 * n * mod ** 2)))
    out["relerr_modelse"] = (100 * (mod / emp - 1),
                             100 * (mod / emp) * np.sqrt(v / (4 * n * mod ** 4) + 1 / (2 * (n - 1))))
    c = np.mean((lo <= tru) & (tru <= hi))
    out["coverage"] = (c, np.sqrt(c * (1 - c) / n))
    r = np.mean(p < alpha)
    out["rejection"] = (r, np.sqrt(r * (1 - r) / n))
    return out


def _random_table(rng, n_per, groups):
    rows = []
    for g in groups:
        est = rng.normal(0.3, 1.0, n_per)
        se = rng.gamma(5.0, 0.2, n_per)
        tru = rng.choice([0.0, 0.5], n_per)
        rows.append(pd.DataFrame({
            "method": g[0], "caliper": g[1], "estimate": est, "truth": tru, "se": se,
            "ci_low": est - 1.96 * se, "ci_high": est + 1.96 * se, "p_value": rng.uniform(size=n_per),
        }))
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_matches_independent_numpy_implementation_per_group():
    rng = np.random.default_rng(2024)
    groups = [("nn", 0.1), ("nn", 0.2), ("opt", 0.1), ("opt", 0.2)]
    df = _random_table(rng, 200, groups)
    res = summarise(df, by=["method", "caliper"], extra_means=())
    assert list(res.columns) == ["method", "caliper", "measure", "value", "mcse", "n"]
    assert len(res) == 4 * 7
    for method, cal in groups:
        sub = df[(df.method == method) & (df.caliper == cal)]
        exp = _independent(*(sub[c].to_numpy() for c in
                             ["estimate", "truth", "se", "ci_low", "ci_high", "p_value"]), 0.05)
        for measure, (value, mcse) in exp.items():
            r = _get(res, measure, method=method, caliper=cal)
            assert r["value"] == pytest.approx(value, rel=1e-10, abs=1e-12), measure
            assert r["mcse"] == pytest.approx(mcse, rel=1e-10, abs=1e-12), measure
            assert r["n"] == 200


def test_group_order_sorted_and_none_key_kept():
    df = pd.DataFrame({"caliper": [0.2, None, 0.1, 0.2, None, 0.1],
                       "estimate": [1.0, 2, 3, 4, 5, 6], "truth": 0.0})
    res = summarise(df, by=["caliper"], extra_means=())
    bias = res[res.measure == "bias"]
    assert bias["caliper"].iloc[:2].tolist() == [0.1, 0.2] and pd.isna(bias["caliper"].iloc[2])
    assert bias["value"].tolist() == pytest.approx([4.5, 2.5, 3.5])


def test_nan_estimates_excluded_and_counted():
    df = pd.DataFrame({"analysis": ["t"] * 5,
                       "estimate": [1.0, np.nan, 3.0, 2.0, np.nan],
                       "truth": 1.0,
                       "se": [1.0, 2.0, np.nan, 1.0, 1.0],
                       "p_value": [0.01, 0.5, 0.02, np.nan, 0.9]})
    res = summarise(df, by=["analysis"])
    b = _get(res, "bias")
    assert b["n"] == 3 and b["value"] == pytest.approx(1.0)
    assert _get(res, "empse")["n"] == 3
    assert _get(res, "modelse")["n"] == 4
    assert _get(res, "modelse")["value"] == pytest.approx(math.sqrt((1 + 4 + 1 + 1) / 4))
    # relerr uses only replicates with both estimate and se: estimates 1, 2 with se 1, 1
    r = _get(res, "relerr_modelse")
    assert r["n"] == 2
    assert r["value"] == pytest.approx(100 * (1.0 / np.std([1.0, 2.0], ddof=1) - 1))
    rej = _get(res, "rejection")
    assert rej["n"] == 4 and rej["value"] == pytest.approx(0.5)
    # No CI columns -> no coverage row; no extra columns -> no mean rows.
    assert set(res.measure) == {"bias", "empse", "mse", "modelse", "relerr_modelse", "rejection"}


def test_measures_without_inputs_are_omitted_per_group():
    # Wilcoxon rows: p-value only. t-test rows: full inputs.
    df = pd.DataFrame({
        "analysis": ["wilcoxon"] * 4 + ["ttest"] * 4,
        "estimate": [np.nan] * 4 + [0.1, 0.2, 0.3, 0.4],
        "truth": 0.0,
        "se": [np.nan] * 4 + [0.1] * 4,
        "p_value": [0.01, 0.2, 0.03, 0.5, 0.01, 0.02, 0.03, 0.5],
    })
    res = summarise(df, by=["analysis"])
    assert set(res[res.analysis == "wilcoxon"].measure) == {"rejection"}
    assert "bias" in set(res[res.analysis == "ttest"].measure)
    assert not res["value"].isna().all()
    # Columns absent from the table entirely.
    only_p = df[["analysis", "p_value"]]
    assert set(summarise(only_p, by=["analysis"]).measure) == {"rejection"}


def test_single_replicate_gives_nan_mcse_not_error():
    df = pd.DataFrame({"estimate": [1.0], "truth": [0.0]})
    res = summarise(df, by=[])
    b = _get(res, "bias")
    assert b["value"] == 1.0 and np.isnan(b["mcse"]) and b["n"] == 1


def test_bad_input_raises():
    df = pd.DataFrame({"estimate": [1.0, 2.0], "truth": 0.0})
    with pytest.raises(ValueError, match="by"):
        summarise(df, by=["nope"])
    with pytest.raises(ValueError, match="alpha"):
        summarise(df, by=[], alpha=1.5)
    with pytest.raises(ValueError, match="df"):
        summarise([1, 2], by=[])


def test_vectorised_speed_on_large_table():
    rng = np.random.default_rng(0)
    n = 400_000
    df = pd.DataFrame({"condition": rng.integers(0, 50, n), "analysis": rng.choice(["a", "b", "c"], n),
                       "estimate": rng.normal(size=n), "truth": 0.0, "se": rng.uniform(0.5, 1.5, n),
                       "p_value": rng.uniform(size=n), "n_pairs": rng.integers(50, 100, n)})
    df["ci_low"] = df.estimate - 2 * df.se
    df["ci_high"] = df.estimate + 2 * df.se
    import time
    t0 = time.perf_counter()
    res = summarise(df, by=["condition", "analysis"])
    assert time.perf_counter() - t0 < 5.0
    assert res.groupby("measure").size().eq(150).all()


def test_mcse_reps_needed():
    assert mcse_reps_needed(0.01) == 2500
    assert mcse_reps_needed(0.005) == 10000
    assert mcse_reps_needed(0.01, sd=0.5) == 2500
    assert mcse_reps_needed(0.05, sd=1.0) == 400
    assert mcse_reps_needed(0.03, sd=1.0) == 1112  # 1111.1 rounded up
    with pytest.raises(ValueError, match="target_mcse"):
        mcse_reps_needed(0)
    with pytest.raises(ValueError, match="sd"):
        mcse_reps_needed(0.1, sd=-1)


def test_coverage_counts_truth_on_a_ci_bound_as_covered():
    """The rule is inclusive, ci_low <= truth <= ci_high (the docstring's formula, rsimsum's rule):
    a truth exactly on either bound, or a zero-width interval at the truth, is covered; one ulp
    outside is not. Checked against an independent count in plain Python."""
    eps_up = float(np.nextafter(0.5, 1.0))
    eps_dn = float(np.nextafter(0.5, 0.0))
    rows = [  # (group, truth, ci_low, ci_high)
        ("a", 0.5, 0.5, 1.5),  # truth == ci_low
        ("a", 0.5, -1.0, 0.5),  # truth == ci_high
        ("a", 0.5, 0.5, 0.5),  # zero-width interval at the truth
        ("a", 0.5, eps_up, 1.5),  # ci_low one ulp above the truth
        ("a", 0.5, -1.0, eps_dn),  # ci_high one ulp below the truth
        ("a", 0.5, 0.0, 1.0),  # strictly inside
        ("a", 0.5, float("nan"), 1.0),  # missing bound: not counted at all
        ("b", -2.0, -2.0, -1.0),  # truth varies per replicate; on the bound again
        ("b", 3.0, 1.0, 3.0),
        ("b", 3.0, 3.5, 4.0),
    ]
    df = pd.DataFrame(rows, columns=["g", "truth", "ci_low", "ci_high"])
    df["estimate"] = (df["ci_low"].fillna(0.0) + df["ci_high"]) / 2
    res = summarise(df, by=["g"], extra_means=())
    for g in ("a", "b"):
        usable = [(t, lo, hi) for gg, t, lo, hi in rows if gg == g and not (math.isnan(lo) or math.isnan(hi))]
        inclusive = sum(lo <= t <= hi for t, lo, hi in usable) / len(usable)
        exclusive = sum(lo < t < hi for t, lo, hi in usable) / len(usable)
        assert inclusive != exclusive  # the data can tell the two rules apart
        r = _get(res, "coverage", g=g)
        assert r["n"] == len(usable)
        assert r["value"] == inclusive
        assert r["mcse"] == pytest.approx(math.sqrt(inclusive * (1 - inclusive) / len(usable)))
    assert _get(res, "coverage", g="a")["value"] == pytest.approx(4 / 6)  # bounds, zero width, inside
    assert _get(res, "coverage", g="b")["value"] == pytest.approx(2 / 3)
