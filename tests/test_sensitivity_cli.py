"""`python -m sim.sensitivity`: results equal the library's, every number at the one sidedness
`--alternative` names (printed and written), and every bad input ends with one `error:` line
naming the culprit and exit code 2 (in-process via main(), one subprocess run)."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.methods.sensitivity.rosenbaum import (hl_confidence_interval, largest_gamma_excluding, sensitivity_table,
                                   sensitivity_value, signed_rank_bound)
from sim.cli.sensitivity import main


def matched_frame(n_pairs=30, seed=0):
    """One row per unit as sim.match writes it: user columns + ps, logit_ps, pair, weight."""
    rng = np.random.default_rng(seed)
    yc = rng.integers(0, 20, n_pairs) * 5.0
    yt = yc + rng.integers(-2, 5, n_pairs) * 5.0
    rows = []
    for i in range(n_pairs):
        rows.append({"id": f"t{i}", "decomp": 1, "barthel": yt[i], "pair": i})
        rows.append({"id": f"c{i}", "decomp": 0, "barthel": yc[i], "pair": i})
    rows += [{"id": f"u{i}", "decomp": 1, "barthel": 50.0, "pair": None} for i in range(5)]  # unmatched
    df = pd.DataFrame(rows)
    df["pair"] = df["pair"].astype("Int64")
    df.insert(3, "ps", rng.uniform(0.2, 0.8, len(df)))
    df["weight"] = df["pair"].notna().astype(float)
    return df.sample(frac=1, random_state=1).reset_index(drop=True)  # rows in any order


@pytest.fixture
def csv(tmp_path):
    df = matched_frame()
    df.loc[df["id"] == "c3", "barthel"] = np.nan  # a death: pair 3 dropped
    path = tmp_path / "matched.csv"
    df.to_csv(path, index=False)
    return path


def diffs(path):
    df = pd.read_csv(path).dropna(subset=["pair"])
    w = df.pivot(index="pair", columns="decomp", values="barthel")
    d = (w[1] - w[0]).to_numpy()
    return d[~np.isnan(d)]


def args(csv, out, *extra):
    return [str(csv), "--outcome", "barthel", "--treatment", "decomp", "--out", str(out), *extra]


def test_happy_path_equals_library(csv, tmp_path, capsys):
    """Default two-sided: the bound is twice the smaller one-sided bound, the interval the library's
    two-sided one, and one MCID is excluded at one-sided alpha/2 (the interval's upper end)."""
    out = tmp_path / "res"
    assert main(args(csv, out, "--gamma", "2,1,1.5", "--mcid", "9.25")) == 0
    got = pd.read_csv(out / "sensitivity.csv")
    d = diffs(csv)
    assert d.size == 29
    ref = sensitivity_table(d, [1, 1.5, 2], mcid=9.25, alpha=0.05)
    cols = ["gamma", "hl_low", "hl_high", "ci_low", "ci_high", "p_upper_mcid"]
    pd.testing.assert_frame_equal(got[cols], ref[cols], check_dtype=False)
    two = [min(1.0, 2 * min(signed_rank_bound(d, g), signed_rank_bound(d, g, alternative="less"))) for g in (1, 1.5, 2)]
    assert got["p_upper"].to_numpy() == pytest.approx(two, rel=1e-12)
    assert (got["alternative"] == "two-sided").all() and (got["alpha"] == 0.05).all()
    assert (got["ci"] == "two-sided 95 %").all() and (got["mcid_level"] == 0.025).all()
    assert (got["mcid_excluded"] == (got["p_upper_mcid"] <= 0.025)).all()
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "pairs: 29 complete of 30 matched (1 with a missing outcome)" in text
    assert "sidedness: two-sided, alpha 0.05 (each one-sided bound at 0.025); interval: two-sided 95 %" in text
    g_star = max(sensitivity_value(d, 0.025), sensitivity_value(d, 0.025, alternative="less"))
    assert f"sensitivity value Γ* (two-sided, alpha 0.05; " in text and f"{g_star:.3f}" in text
    assert f"one MCID (9.25) at one-sided 0.025 (two-sided): {largest_gamma_excluding(d, 9.25, 0.025):.3f}" in text


def test_lower_is_better_flips_sign_and_defaults(csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default --out is "."
    assert main([str(csv), "--outcome", "barthel", "--treatment", "decomp", "--lower-is-better",
                 "--method", "normal", "--alternative", "greater"]) == 0
    got = pd.read_csv(tmp_path / "sensitivity.csv")
    ref = sensitivity_table(-diffs(csv), [1, 1.25, 1.5, 2, 3], method="normal", alpha=0.1)  # alpha/2 a side = 0.05
    pd.testing.assert_frame_equal(got[["gamma", "p_upper", "hl_low", "hl_high", "ci_low"]],
                                  ref[["gamma", "p_upper", "hl_low", "hl_high", "ci_low"]], check_dtype=False)
    assert np.isinf(got["ci_high"]).all() and (got["ci"] == "one-sided 95 % (lower limit)").all()
    assert "control - treated" in capsys.readouterr().out


def _continuous(n=40, shift=6.0, seed=3):
    """Pair differences without ties (the interval's ends and the MCID test then agree exactly)."""
    return np.random.default_rng(seed).normal(shift, 12.0, n)


def _pairs_csv(tmp_path, d):
    rows = []
    for i, x in enumerate(d):
        rows += [{"decomp": 1, "barthel": 50.0 + x, "pair": i}, {"decomp": 0, "barthel": 50.0, "pair": i}]
    path = tmp_path / "cont.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("alternative, level", [("two-sided", 0.025), ("less", 0.05)])
def test_mcid_verdict_agrees_with_the_interval_it_is_printed_beside(tmp_path, capsys, alternative, level):
    """The flaw of a one-sided MCID test beside a two-sided interval: with the sidedness shared, one
    MCID is excluded exactly when the interval's upper end lies below it, at every Γ, including an
    MCID between the two (one-sided at alpha excludes it, the two-sided 95 % interval does not)."""
    d = _continuous()
    hi_two = hl_confidence_interval(d, 1.0, 0.05)[1]  # two-sided 95 %: alpha/2 a side
    hi_one = hl_confidence_interval(d, 1.0, 0.10)[1]  # one-sided 95 % upper limit
    mcid = (hi_one + hi_two) / 2
    assert hi_one < mcid < hi_two
    out = tmp_path / alternative
    assert main([str(_pairs_csv(tmp_path, d)), "--outcome", "barthel", "--treatment", "decomp", "--mcid",
                 f"{mcid!r}", "--gamma", "1,1.1,1.3,2", "--alternative", alternative, "--out", str(out)]) == 0
    got = pd.read_csv(out / "sensitivity.csv")
    assert (got["mcid_level"] == level).all()
    assert (got["mcid_excluded"] == (got["ci_high"] < mcid)).all(), got
    assert bool(got["mcid_excluded"].iloc[0]) is (alternative == "less")
    if alternative == "less":
        assert np.isneginf(got["ci_low"]).all()
    printed = capsys.readouterr().out
    assert f"sidedness: {alternative}, alpha 0.05" in printed and "mcid_excluded" in printed


def test_two_sided_sensitivity_value_is_the_significant_direction_at_half_alpha(tmp_path, capsys):
    d = _continuous(shift=-9.0)  # treatment worse: significant in the 'less' direction only
    assert main([str(_pairs_csv(tmp_path, d)), "--outcome", "barthel", "--treatment", "decomp",
                 "--out", str(tmp_path)]) == 0
    g = sensitivity_value(d, 0.025, alternative="less")
    assert g > 1 and sensitivity_value(d, 0.025) == 1.0
    text = capsys.readouterr().out
    assert f"sensitivity value Γ* (two-sided, alpha 0.05; τ < 0, treatment worse): {g:.3f}" in text
    p = pd.read_csv(tmp_path / "sensitivity.csv")["p_upper"]
    assert p.iloc[0] == pytest.approx(min(1.0, 2 * signed_rank_bound(d, 1.0, alternative="less")))
    assert not math.isnan(p.iloc[0])


def test_subprocess_run(csv, tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim.sensitivity", *args(csv, tmp_path / "o", "--gamma", "1,2")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "sensitivity.csv").exists() and (tmp_path / "o" / "sensitivity.png").exists()
    assert "Traceback" not in r.stderr and "wrote" in r.stdout


def test_default_treatment_column_named_in_error(csv, capsys):
    assert main([str(csv), "--outcome", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "error: column(s) not found in input: nope, treated"


def write(tmp_path, df, name="m.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _bad_cases(tmp_path):
    base = matched_frame()
    cases = {}
    cases["missing file"] = (args(tmp_path / "none.csv", tmp_path), "input file not found")
    (tmp_path / "empty.csv").write_text("")
    cases["empty file"] = (args(tmp_path / "empty.csv", tmp_path), "cannot read")
    (tmp_path / "broken.csv").write_text('a,b\n1,2\n3,"4\n')
    cases["unreadable csv"] = (args(tmp_path / "broken.csv", tmp_path), "cannot read")
    (tmp_path / "header.csv").write_text("decomp,barthel,pair\n")
    cases["no rows"] = (args(tmp_path / "header.csv", tmp_path), "no data rows")
    cases["missing outcome column"] = (
        [str(write(tmp_path, base)), "--outcome", "bi", "--treatment", "decomp"], "not found in input: bi")
    cases["missing pair column"] = (
        args(write(tmp_path, base.drop(columns="pair"), "np.csv"), tmp_path), "not found in input: pair")
    txt = base.astype({"barthel": object})
    txt.loc[txt.index[0], "barthel"] = "high"
    cases["non-numeric outcome"] = (args(write(tmp_path, txt, "txt.csv"), tmp_path), "'barthel' is not numeric")
    inf = base.copy()
    inf.loc[inf.index[0], "barthel"] = np.inf
    cases["infinite outcome"] = (args(write(tmp_path, inf, "inf.csv"), tmp_path), "infinite")
    trip = pd.concat([base, base[(base["pair"] == 4) & (base["decomp"] == 0)]])
    cases["pair with 3 rows"] = (args(write(tmp_path, trip, "trip.csv"), tmp_path), "pair(s) 4 in column 'pair'")
    two = base.copy()
    two.loc[(two["pair"] == 7), "decomp"] = 1
    cases["pair with 2 treated"] = (args(write(tmp_path, two, "two.csv"), tmp_path), "pair(s) 7 ")
    t2 = base.copy()
    t2.loc[t2.index[0], "decomp"] = 2
    cases["treatment not 0/1"] = (args(write(tmp_path, t2, "t2.csv"), tmp_path), "'decomp' must be 0/1")
    dead = base.copy()
    dead.loc[dead["decomp"] == 0, "barthel"] = np.nan
    cases["no complete pairs"] = (args(write(tmp_path, dead, "dead.csv"), tmp_path), "no complete pairs")
    unm = base.assign(pair=pd.array([None] * len(base), dtype="Int64"))
    cases["no matched rows"] = (args(write(tmp_path, unm, "unm.csv"), tmp_path), "no matched rows")
    good = write(tmp_path, base, "good.csv")
    for g, msg in (("1,x", "'x'"), ("0.5,2", "'0.5'"), ("", "empty list"), (",", "empty list"),
                   ("1,nan", "'nan'"), ("1,inf", "'inf'")):
        cases[f"gamma {g!r}"] = (args(good, tmp_path, "--gamma", g), msg)
    for a in ("0", "0.5", "x", "-0.1"):
        cases[f"alpha {a}"] = (args(good, tmp_path, "--alpha", a), "--alpha must be")
    for m in ("0", "-3", "x", "inf"):
        cases[f"mcid {m}"] = (args(good, tmp_path, "--mcid", m), "--mcid must be")
    (tmp_path / "afile").write_text("x")
    cases["unwritable out"] = (args(good, tmp_path / "afile"), "cannot write to")
    cases["out under a file"] = (args(good, tmp_path / "afile" / "sub"), "cannot write to")
    cases["missing --outcome"] = ([str(good), "--treatment", "decomp"], "--outcome")
    cases["unknown option"] = (args(good, tmp_path, "--gama", "2"), "unrecognized arguments: --gama")
    cases["bad method"] = (args(good, tmp_path, "--method", "mc"), "invalid choice: 'mc'")
    cases["bad alternative"] = (args(good, tmp_path, "--alternative", "up"),
                                "argument --alternative: invalid choice: 'up' (choose from 'two-sided', 'greater', "
                                "'less')")
    cases["mcid with greater"] = (args(good, tmp_path, "--alternative", "greater", "--mcid", "9"),
                                  "--mcid needs --alternative two-sided or less")
    (tmp_path / "dup.csv").write_text("decomp,barthel,pair,barthel\n1,5,1,6\n0,3,1,2\n")
    cases["duplicate column"] = (args(tmp_path / "dup.csv", tmp_path), "more than once in the header: barthel")
    cases["same columns"] = ([str(good), "--outcome", "decomp", "--treatment", "decomp"], "three different")
    return cases


def test_bad_inputs(tmp_path, capsys):
    cases = _bad_cases(tmp_path)
    assert len(cases) >= 25
    for name, (argv, msg) in cases.items():
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert msg in lines[0], (name, lines[0])
        assert "unexpected" not in lines[0], (name, lines[0])
