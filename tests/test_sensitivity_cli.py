"""`python -m sim.sensitivity`: results equal the library's, every number at the one sidedness
`--alternative` names (printed and written), and every bad input ends with one `error:` line
naming the culprit and exit code 2 (in-process via main(), one subprocess run)."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.methods.sensitivity.rosenbaum import (amplification_table, hl_confidence_interval, largest_gamma_excluding,
                                               sensitivity_table, sensitivity_value, signed_rank_bound)
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
    assert "sensitivity value Γ* (two-sided, alpha 0.05; " in text and f"{g_star:.3f}" in text
    assert f"one MCID (9.25) at one-sided 0.025 (two-sided): {largest_gamma_excluding(d, 9.25, 0.025):.3f}" in text


def test_lower_is_better_flips_sign_and_defaults(csv, tmp_path, capsys, monkeypatch):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # default --out is the input's folder, not the current directory
    assert main([str(csv), "--outcome", "barthel", "--treatment", "decomp", "--lower-is-better",
                 "--method", "normal", "--alternative", "greater"]) == 0
    assert not any(cwd.iterdir())
    assert {p.name for p in csv.parent.iterdir()} >= {"sensitivity.csv", "sensitivity.json", "amplification.csv",
                                                       "sensitivity.png"}
    got = pd.read_csv(csv.parent / "sensitivity.csv")
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


def test_default_treatment_column_named_in_error(csv, capsys):
    """No matched.json beside the file: --treatment defaults to 'treated', and the error says so."""
    assert main([str(csv), "--outcome", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: column(s) not found in input: nope, treated (no matched.json from sim.match")
    assert "--treatment COL" in err and len(err.splitlines()) == 1


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
    cases["bad zero method"] = (args(good, tmp_path, "--zero-method", "zsplit"),
                                "argument --zero-method: invalid choice: 'zsplit' (choose from 'wilcox', 'pratt')")
    cases["--binary on a continuous outcome"] = (args(good, tmp_path, "--binary"),
                                                 "--binary needs a 0/1 outcome; column 'barthel' has")
    binary = base.assign(barthel=(base["barthel"] > 50).astype(int))
    cases["--mcid with a 0/1 outcome"] = (args(write(tmp_path, binary, "bin.csv"), tmp_path, "--mcid", "1"),
                                          "--mcid needs a continuous outcome")
    def matched(name: str, roles: str) -> str:
        """A matched.csv of `base` beside a matched.json holding these roles (sim.match's format)."""
        folder = tmp_path / name
        folder.mkdir()
        (folder / "matched.json").write_text(f'{{"format": "sim.match/1", "pair": "pair"{roles}}}')
        return str(write(folder, base, "matched.csv"))

    cases["roles file without a treatment"] = ([matched("roles", ""), "--outcome", "barthel"],
                                               "names no treatment column (key 'treatment'); pass --treatment COL")
    cases["matched with replacement"] = ([matched("ratio", ', "treatment": "decomp", "ratio": 2, "replace": true'),
                                          "--outcome", "barthel"], "matched with "
                                         "--replace (controls in several sets); the bounds need sets without")
    cases["subclasses"] = ([matched("subclass", ', "treatment": "decomp", "structure": "subclasses"'),
                            "--outcome", "barthel"], "subclassification (--method "
                           "subclass); Rosenbaum bounds need matched sets with one treated unit or one control")
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


# ---------------------------------------------------------------- roles file, zero method, 0/1 outcomes, files, figure
def test_roles_come_from_matched_json(tmp_path, capsys):
    """matched.json beside the file names the treatment column: no --treatment needed; a flag
    still wins; a .json that is not sim.match's is ignored with one warning line."""
    df = matched_frame()
    path = write(tmp_path, df, "matched.csv")
    (tmp_path / "matched.json").write_text(json.dumps({"format": "sim.match/1", "treatment": "decomp",
                                                       "pair": "pair", "ratio": 1, "replace": False}))
    assert main([str(path), "--outcome", "barthel", "--gamma", "1,2"]) == 0
    out = capsys.readouterr().out
    roles = str(tmp_path / "matched.json")
    assert f"columns: treatment 'decomp' (from {roles}), pair 'pair' (from {roles})" in out
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    assert (summary["treatment"], summary["treatment_from"], summary["pair_from"]) == ("decomp", roles, roles)
    first = pd.read_csv(tmp_path / "sensitivity.csv")
    # the flag wins over the roles file: decomp renamed, the file's 'decomp' column then missing
    assert main([str(path), "--outcome", "barthel", "--treatment", "ps"]) == 2
    assert "'ps' must be 0/1" in capsys.readouterr().err
    assert main([str(path), "--outcome", "barthel", "--treatment", "decomp", "--gamma", "1,2"]) == 0
    assert "columns: treatment 'decomp' (from --treatment), pair 'pair' (from " + roles in capsys.readouterr().out
    (tmp_path / "matched.json").write_text('{"some": "other tool"}')
    assert main([str(path), "--outcome", "barthel", "--treatment", "decomp", "--gamma", "1,2"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ignoring") and "not a sim.match roles file" in err[0]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sensitivity.csv"), first)


def _zero_heavy(n_pairs=70, seed=5):
    """Pairs with many zero differences and ties (as earnings with many zeros, in steps of 100)."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-3, 6, n_pairs) * 100.0
    d[rng.random(n_pairs) < 0.2] = 0.0
    return d


@pytest.mark.parametrize("method", ["exact", "normal"])
def test_zero_method_reaches_every_number(tmp_path, capsys, method):
    d = _zero_heavy(40)
    assert (d == 0).sum() >= 5
    path = _pairs_csv(tmp_path, d)
    tables = {}
    for zm in ("wilcox", "pratt"):
        out = tmp_path / zm
        assert main([str(path), "--outcome", "barthel", "--treatment", "decomp", "--zero-method", zm,
                     "--method", method, "--mcid", "200", "--gamma", "1,1.5,2", "--out", str(out)]) == 0
        got = pd.read_csv(out / "sensitivity.csv")
        tables[zm] = got
        assert (got["zero_method"] == zm).all()
        ref = [min(1.0, 2 * min(signed_rank_bound(d, g, alternative=a, method=method, zero_method=zm)
                                for a in ("greater", "less"))) for g in (1, 1.5, 2)]
        assert got["p_upper"].to_numpy() == pytest.approx(ref, rel=1e-12)
        ref_mcid = [signed_rank_bound(d, g, tau0=200, alternative="less", method=method, zero_method=zm)
                    for g in (1, 1.5, 2)]
        assert got["p_upper_mcid"].to_numpy() == pytest.approx(ref_mcid, rel=1e-12)
        summary = json.loads((out / "sensitivity.json").read_text())
        g_star = max(sensitivity_value(d, 0.025, alternative=a, method=method, zero_method=zm)
                     for a in ("greater", "less"))
        assert summary["gamma_star"] == pytest.approx(g_star, rel=1e-12)
        assert summary["zero_method"] == zm and summary["bound"] == method
        assert summary["pairs_zero_difference"] == int((d == 0).sum())
        assert summary["gamma_mcid"] == pytest.approx(
            largest_gamma_excluding(d, 200, 0.025, method=method, zero_method=zm), rel=1e-12)
        assert f"--zero-method {zm}" in capsys.readouterr().out
    # zeros present: the two differ in the bounds, not in the Hodges-Lehmann numbers
    assert not np.allclose(tables["wilcox"]["p_upper"], tables["pratt"]["p_upper"])
    cols = ["hl_low", "hl_high", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(tables["wilcox"][cols], tables["pratt"][cols])


def _brute_binomial_tail(t, n, p):
    return sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(t, n + 1))


@pytest.mark.parametrize("flag", [[], ["--binary"]])
def test_binary_outcome_gets_the_mcnemar_bound(tmp_path, capsys, flag):
    """A 0/1 outcome is detected (or forced): the bound is the binomial tail over the discordant
    pairs, written with the counts; Γ* solves bound = alpha/2 (two-sided)."""
    rows, pairs = [], [(1, 0)] * 17 + [(0, 1)] * 4 + [(1, 1)] * 9 + [(0, 0)] * 6  # (treated, control)
    for i, (yt, yc) in enumerate(pairs):
        rows += [{"decomp": 1, "died": yt, "pair": i}, {"decomp": 0, "died": yc, "pair": i}]
    path = write(tmp_path, pd.DataFrame(rows), "bin.csv")
    assert main([str(path), "--outcome", "died", "--treatment", "decomp", "--gamma", "1,1.5,2,3", *flag]) == 0
    got = pd.read_csv(tmp_path / "sensitivity.csv")
    assert (got["test"] == "McNemar (discordant pairs)").all()
    assert (got[["n_discordant", "n_treated_only", "n_control_only"]] == [21, 17, 4]).all().all()
    for g, p in zip(got["gamma"], got["p_upper"]):
        q = g / (1 + g)
        ref = min(1.0, 2 * min(_brute_binomial_tail(17, 21, q), _brute_binomial_tail(4, 21, q)))
        assert p == pytest.approx(ref, rel=1e-12)
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    g_star = summary["gamma_star"]
    assert summary["outcome_type"] == "binary" and summary["zero_method"] is None
    assert _brute_binomial_tail(17, 21, g_star / (1 + g_star)) == pytest.approx(0.025, rel=1e-9)
    assert "outcome 'died' is 0/1" in capsys.readouterr().out
    # --lower-is-better (the event is bad): the same pairs counted the other way round
    assert main([str(path), "--outcome", "died", "--treatment", "decomp", "--lower-is-better"]) == 0
    flipped = json.loads((tmp_path / "sensitivity.json").read_text())
    assert (flipped["n_treated_only"], flipped["n_control_only"]) == (4, 17)
    assert flipped["gamma_star"] == pytest.approx(g_star) and flipped["gamma_star_direction"].startswith("τ < 0")


def test_files_hold_gamma_star_sidedness_and_amplification(tmp_path):
    d = _continuous(shift=9.0)
    path = _pairs_csv(tmp_path, d)
    assert main([str(path), "--outcome", "barthel", "--treatment", "decomp", "--alternative", "greater",
                 "--alpha", "0.1"]) == 0
    summary = json.loads((tmp_path / "sensitivity.json").read_text())
    g_star = sensitivity_value(d, 0.1)
    assert summary["gamma_star"] == pytest.approx(g_star, rel=1e-12) and g_star > 1.5
    assert (summary["alternative"], summary["alpha"], summary["gamma_star_one_sided_level"]) == ("greater", 0.1, 0.1)
    assert summary["gamma_star_direction"] == "τ > 0, treatment better"
    amp = pd.read_csv(tmp_path / "amplification.csv")
    pd.testing.assert_frame_equal(amp, amplification_table(g_star))
    assert np.allclose((amp.lam * amp.delta + 1) / (amp.lam + amp.delta), g_star)
    assert [[a["lam"], a["delta"]] for a in summary["amplification"]] == pytest.approx(amp[["lam", "delta"]].to_numpy())
    # nothing to amplify when not significant at Γ = 1: an empty table, and the file says why
    assert main([str(_pairs_csv(tmp_path, _continuous(shift=0.0))), "--outcome", "barthel", "--treatment",
                 "decomp"]) == 0
    assert pd.read_csv(tmp_path / "amplification.csv").empty
    assert "not significant at Γ = 1" in json.loads((tmp_path / "sensitivity.json").read_text())["amplification_note"]


def test_figure_draws_the_exact_curve_through_gamma_star(tmp_path, monkeypatch):
    """The plotted curve is the bound on a fine grid (>= 200 Γ) that contains Γ* and the table's
    Γ: it meets α exactly at Γ*, so a straight line between the table's points cannot mislead."""
    import sim.report.sensitivity_figure as F

    seen = {}
    real = F.sensitivity_figure
    monkeypatch.setattr(F, "sensitivity_figure", lambda path, **kw: seen.update(kw) or real(path, **kw))
    d = _zero_heavy(70)
    path = _pairs_csv(tmp_path, d)
    assert main([str(path), "--outcome", "barthel", "--treatment", "decomp"]) == 0
    g_star = json.loads((tmp_path / "sensitivity.json").read_text())["gamma_star"]
    grid, curve = np.asarray(seen["grid"]), np.asarray(seen["curve"])
    assert 1 < g_star < 3 and grid.size >= 200 and np.all(np.diff(grid) > 0) and np.all(np.diff(curve) >= -1e-15)
    assert curve[np.flatnonzero(grid == g_star)[0]] == pytest.approx(0.05, rel=1e-9)
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    assert np.interp(table["gamma"], grid, curve) == pytest.approx(table["p_upper"].to_numpy(), rel=1e-12)
    assert np.interp(0.05, curve, grid) == pytest.approx(g_star, rel=1e-3)  # the drawn crossing
    assert seen["gamma_star"] == g_star and seen["star_label"].startswith(f"Γ* = {g_star:.3f}")
    assert (tmp_path / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _nsw_like(seed=11, n_treated=60, n_control=400):
    """Public-data-like (NSW/CPS style): a treatment column not called 'treated', earnings with many
    zeros and ties (steps of 100), a 0/1 employment outcome."""
    rng = np.random.default_rng(seed)
    t = np.r_[np.ones(n_treated, int), np.zeros(n_control, int)]
    n = t.size
    age = np.where(t == 1, rng.normal(25, 7, n), rng.normal(33, 11, n)).clip(17, 55).round()
    educ = np.where(t == 1, rng.normal(10, 2, n), rng.normal(12, 3, n)).clip(3, 18).round()
    black = (rng.random(n) < np.where(t == 1, 0.8, 0.25)).astype(int)
    re75 = np.where(rng.random(n) < np.where(t == 1, 0.6, 0.2), 0, np.round(rng.gamma(2, 4000, n), -2))
    employed = rng.random(n) < np.where(t == 1, 0.85, 0.6)
    re78 = np.where(employed, np.round(np.maximum(2000 + 0.6 * re75 + 2500 * t + rng.normal(0, 3000, n), 0), -2), 0)
    return pd.DataFrame({"treat": t, "age": age, "educ": educ, "black": black, "re75": re75, "re78": re78,
                         "employed78": (re78 > 0).astype(int)})


def test_readme_commands_work_with_defaults(tmp_path):
    """The README's two commands, as printed, on data whose treatment column is not 'treated':
    sim.match writes nsw_matched/ beside the input with matched.json; sim.sensitivity finds the
    roles there and writes its files beside matched.csv (two subprocesses, the whole path)."""
    data = tmp_path / "data"
    data.mkdir()
    df = _nsw_like()
    df.to_csv(data / "nsw.csv", index=False)
    run = [sys.executable, "-m"]
    r = subprocess.run(run + ["sim.match", str(data / "nsw.csv"), "--treatment", "treat", "--covariates",
                              "age,educ,black,re75"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = data / "nsw_matched"
    roles = json.loads((out / "matched.json").read_text())
    assert (roles["format"], roles["treatment"], roles["pair"], roles["ratio"]) == ("sim.match/1", "treat", "pair", 1)
    assert roles["covariates"] == ["age", "educ", "black", "re75"] and roles["caliper"] == 0.2
    r = subprocess.run(run + ["sim.sensitivity", str(out / "matched.csv"), "--outcome", "re78"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "warning" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["amplification.csv", "balance.csv", "matched.csv",
                                                     "matched.json", "ps_coefficients.csv", "sensitivity.csv", "sensitivity.json",
                                                     "sensitivity.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing in the current directory
    m = pd.read_csv(out / "matched.csv").dropna(subset=["pair"])
    w = m.pivot(index="pair", columns="treat", values="re78")
    d = (w[1] - w[0]).to_numpy()
    assert (d == 0).sum() >= 3  # ties at zero earnings: the zero method matters
    summary = json.loads((out / "sensitivity.json").read_text())
    g_star = max(sensitivity_value(d, 0.025, alternative=a) for a in ("greater", "less"))
    assert summary["gamma_star"] == pytest.approx(g_star, rel=1e-12) and summary["gamma_star"] > 1
    assert summary["treatment_from"] == str(out / "matched.json") and summary["zero_method"] == "wilcox"
    assert f"{g_star:.3f}" in r.stdout
    # the binary outcome of the same file, in process: McNemar, found without --binary
    assert main([str(out / "matched.csv"), "--outcome", "employed78", "--out", str(tmp_path / "bin")]) == 0
    assert json.loads((tmp_path / "bin" / "sensitivity.json").read_text())["test"] == "McNemar (discordant pairs)"
