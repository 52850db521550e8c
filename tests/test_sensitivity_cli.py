"""`python -m sim.sensitivity`: results equal the library's, and every bad input ends with one
`error:` line naming the culprit and exit code 2 (in-process via main(), one subprocess run)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.methods.rosenbaum import sensitivity_table
from sim.sensitivity import main


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
    out = tmp_path / "res"
    assert main(args(csv, out, "--gamma", "2,1,1.5", "--mcid", "9.25")) == 0
    got = pd.read_csv(out / "sensitivity.csv")
    d = diffs(csv)
    assert d.size == 29
    ref = sensitivity_table(d, [1, 1.5, 2], mcid=9.25)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "pairs: 29 complete of 30 matched (1 with a missing outcome)" in text
    assert "sensitivity value" in text and "one MCID (9.25)" in text


def test_lower_is_better_flips_sign_and_defaults(csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default --out is "."
    assert main([str(csv), "--outcome", "barthel", "--treatment", "decomp", "--lower-is-better",
                 "--method", "normal"]) == 0
    got = pd.read_csv(tmp_path / "sensitivity.csv")
    ref = sensitivity_table(-diffs(csv), [1, 1.25, 1.5, 2, 3], method="normal")
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert "control - treated" in capsys.readouterr().out


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
