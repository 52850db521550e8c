"""The figures methods papers use (sim.report.method_figures): the zip plot of CI coverage (Morris, White &
Crowther 2019), the nested-loop plot of a multi-factor grid (Rücker & Schwarzer 2014) and a forest
(lollipop) plot, drawn from small synthetic frames; their settings (experiment.figures, checked
before a run); and the end of a run on the terminal (a short summary, never the key table)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from sim.jobs.config import ConfigError  # noqa: E402
from sim.jobs.conditions import short_names  # noqa: E402
from sim.report import method_figures as F  # noqa: E402
from sim.report.settings import check_report_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIN_PNG_BYTES = 10_000  # a figure with its panels drawn, not an empty canvas


# ----------------------------------------------------------------------------- synthetic data

def synthetic_replicates(reps: int = 60, seed: int = 1) -> pd.DataFrame:
    """Replicates of two conditions (caliper 0.2 and none) x effect 0/1, two outcomes, two visits,
    a Wald-CI analysis (est) and one with a CI but no estimate (bounds); truth varies by replicate
    under effect 1, and caliper none is biased, so it undercovers."""
    rng = np.random.default_rng(seed)
    rows = []
    grid = list(itertools.product([0.2, None], [0.0, 1.0]))
    for c, (caliper, effect) in enumerate(grid):
        for rep, outcome, time_ in itertools.product(range(reps), ("barthel", "eq5d"), ("m1", "m6")):
            truth = effect * (1 + 0.1 * rng.standard_normal())
            bias = 0.0 if caliper is not None else 1.5
            est = truth + bias + rng.standard_normal()
            base = dict(condition=c, caliper=np.nan if caliper is None else caliper, effect_mcid=effect, rep=rep,
                        outcome=outcome, timepoint=time_, truth_matched=truth, truth_att=truth + 0.05)
            rows.append({**base, "analysis": "est", "estimate": est, "se": 1.0, "ci_low": est - 1.96,
                         "ci_high": est + 1.96, "p_value": np.nan})
            mid = truth + bias + rng.standard_normal()
            rows.append({**base, "analysis": "bounds", "estimate": np.nan, "se": np.nan, "ci_low": mid - 1.5,
                         "ci_high": mid + 2.5, "p_value": np.nan})
            rows.append({**base, "analysis": "test", "estimate": np.nan, "se": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan, "p_value": rng.uniform()})
    return pd.DataFrame(rows)


A_LEVELS, B_LEVELS, C_LEVELS = [2.0, 1.0], [None, 0.5, 0.1], ["y", "x"]  # deliberately out of order


def synthetic_summary() -> pd.DataFrame:
    """A tidy summary over a 2 x 3 x 2 grid (a, b with a missing level, c text), rows in an
    order unlike the nesting; value encodes the condition: 100 a + 10 rank(b) + rank(c)."""
    rows = []
    b_rank = {0.1: 0, 0.5: 1, None: 2}
    for a, b, c in itertools.product(A_LEVELS, B_LEVELS, C_LEVELS):
        for outcome, time_, analysis in itertools.product(("barthel", "eq5d"), ("m1", "m6"), ("est", "alt")):
            value = 100 * a + 10 * b_rank[b] + "xy".index(c)
            for measure, v in (("bias", value), ("rejection", 0.05 + 0.001 * value / 3)):
                rows.append(dict(a=a, b=np.nan if b is None else b, c=c, outcome=outcome, timepoint=time_,
                                 analysis=analysis, measure=measure, value=v, mcse=0.01, n=100))
    return pd.DataFrame(rows)


def _nonzero_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > MIN_PNG_BYTES, (path, path.stat().st_size)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- zip plot

WHERE = {"caliper": None, "effect_mcid": 1.0}


def test_zip_plot_writes_png(tmp_path):
    reps = synthetic_replicates()
    by = F.zip_plot(reps, "est", "truth_matched", tmp_path / "zip_by.png", "zip by caliper",
                    where={"effect_mcid": 0.0, "timepoint": "m6"}, by="caliper")
    _nonzero_png(by)
    assert F.zip_plot(reps, "test", "truth_matched", tmp_path / "none.png", "no CI") is None  # a test has no CI
    assert F.zip_plot(reps, "est", "truth_matched", tmp_path / "none.png", "x", where={"caliper": 0.3}) is None


@pytest.mark.parametrize("analysis,where", [("est", WHERE), ("bounds", {"caliper": 0.2, "effect_mcid": 0.0}),
                                            ("bounds", WHERE)])
def test_zip_plot_counts_the_cis_missing_the_truth(analysis, where):
    reps = synthetic_replicates()
    sel = reps[(reps["analysis"] == analysis) & (reps["effect_mcid"] == where["effect_mcid"])]
    sel = sel[sel["caliper"].isna()] if where["caliper"] is None else sel[sel["caliper"] == where["caliper"]]
    truth = sel["truth_matched"]
    expected = int(((sel["ci_low"] > truth) | (sel["ci_high"] < truth)).sum())
    fig = F.zip_figure(reps, analysis, "truth_matched", "zip", where=where)
    try:
        drawn = {gid: sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if c.get_gid() == gid)
                 for gid in ("not_covering", "covering")}
        titles = " ".join(ax.get_title() for ax in fig.axes)
    finally:
        plt.close(fig)
    assert drawn["not_covering"] == expected
    assert drawn["covering"] + drawn["not_covering"] == len(sel)
    per_panel = sel.assign(miss=(sel["ci_low"] > truth) | (sel["ci_high"] < truth)).groupby(
        ["outcome", "timepoint"])["miss"].sum()
    for (o, t), k in per_panel.items():
        assert f"{o}, {t}\n" in titles and f"{int(k)} of {len(sel) // 4} miss" in titles
    if where["caliper"] is None:
        assert expected > 10  # the biased condition undercovers: the count is a real test


def test_zip_ranks_by_abs_z_with_the_misses_on_top():
    """For a Wald CI a larger |z| is exactly a miss: the non-covering CIs hold the highest centiles."""
    d = F.zip_frame(synthetic_replicates(), "est", "truth_matched", WHERE)
    for _, g in d.groupby(["outcome", "timepoint"]):
        g = g.sort_values("centile")
        assert np.allclose(g["centile"], 100 * np.arange(1, len(g) + 1) / len(g))
        assert np.all(np.diff(g["z"].to_numpy()) >= 0)
        misses = (~g["covers"]).to_numpy()
        assert not misses[: len(g) - misses.sum()].any()  # all misses after all covering CIs
        z = np.abs(g["estimate"] - g["truth_matched"]) / g["se"]
        assert np.allclose(g["z"], z)


# ----------------------------------------------------------------------------- nested-loop plot

def test_nested_order_follows_the_factor_nesting():
    s = synthetic_summary()
    for factors in (["a", "b", "c"], ["c", "a", "b"], ["b", "c"]):
        order = F.nested_order(s, factors)
        levels = {"a": sorted(A_LEVELS), "b": [0.1, 0.5, None], "c": sorted(C_LEVELS)}
        expected = list(itertools.product(*(levels[f] for f in factors)))
        got = [tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in r)
               for r in order.itertuples(index=False)]
        assert got == expected, factors


def test_nested_loop_plot_puts_the_conditions_in_nested_order(tmp_path):
    s = synthetic_summary()
    out = F.nested_loop_figure(s, ["a", "b", "c"], "bias", ["est"], "nested", "bias", reference=0.0)
    assert out is not None
    fig, order = out
    try:
        main, legend = fig.axes[0], fig.axes[-1]
        y = np.asarray(main.get_lines()[0].get_ydata(), dtype=float)
        # value = 100 a + 10 rank(b) + rank(c): nested order (a outermost) makes it increase
        assert np.all(np.diff(y) > 0), y
        assert len(y) == len(order) == 12
        # the nested-loop legend: one step line per factor; the outermost changes level once, the
        # innermost at every condition
        steps = [np.asarray(ln.get_ydata(), dtype=float) for ln in legend.get_lines()]
        changes = [int((np.diff(st) != 0).sum()) for st in steps]
        assert changes == [1, 5, 11]
    finally:
        plt.close(fig)
    _nonzero_png(F.nested_loop_plot(s, ["c", "a"], "rejection", ["est", "alt"], tmp_path / "nl2.png", "nested",
                                    "rejection", reference=0.05, where={"b": 0.5}))
    assert F.nested_loop_plot(s, ["a"], "nosuch", ["est"], tmp_path / "x.png", "", "") is None


# ----------------------------------------------------------------------------- forest plot

def test_forest_plot_writes_png(tmp_path):
    s = synthetic_summary()
    where = {"a": 1.0, "b": None, "c": "x"}
    _nonzero_png(F.forest_plot(s, "rejection", tmp_path / "forest_by.png", "forest by b", where={"a": 2.0, "c": "y"},
                               by="b", reference=0.05))
    fig = F.forest_figure(s, "bias", "forest", analyses=["alt", "est"], where=where)
    try:
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["alt", "est"]
    finally:
        plt.close(fig)
    assert F.forest_plot(s, "bias", tmp_path / "x.png", "", where={"a": 3.0}) is None


# ----------------------------------------------------------------------------- settings

FACTORS = ["caliper", "effect_mcid"]
GOOD = {"zip": {"analysis": "diff_means", "where": {"caliper": 0.2, "effect_mcid": 0.0}},
        "nested_loop": {"analysis": "diff_means", "measure": "bias", "order": ["effect_mcid", "caliper"]},
        "forest": {"measure": "bias", "where": {"effect_mcid": 0.0}, "by": "caliper"}}


def _check(figures: dict) -> None:
    check_report_settings(OmegaConf.create({"experiment": {"figures": figures}}), FACTORS)


def test_good_figure_settings_pass():
    _check(GOOD)
    _check({"zip": {"analysis": "lee_bounds", "by": "caliper", "where": {"effect_mcid": 1.0, "timepoint": "m6",
                                                                          "caliper": [None, 0.2]},
                    "estimand": "always_seen"}})
    _check({"nested_loop": {"analysis": ["wilcoxon", "crude_wilcoxon"], "measure": "rejection",
                            "where": {"caliper": 0.2}, "reference": 0.05}})


BAD = [
    ({"zipp": {}}, "experiment.figures.zipp", ["zip", "nested_loop", "forest"]),
    ({"zip": {"where": {"caliper": 0.2, "effect_mcid": 0.0}}}, "experiment.figures.zip", ["analysis"]),
    ({"zip": {**GOOD["zip"], "colour": "red"}}, "experiment.figures.zip", ["colour", "where", "by"]),
    ({"zip": {**GOOD["zip"], "analysis": "nosuch"}}, "experiment.figures.zip.analysis", ["diff_means", "wilcoxon"]),
    ({"zip": {**GOOD["zip"], "analysis": ["diff_means", "paired_t"]}}, "experiment.figures.zip.analysis", ["one"]),
    ({"zip": {"analysis": "diff_means", "where": {"caliper": 0.2}}}, "experiment.figures.zip.where",
     ["effect_mcid"]),
    ({"zip": {"analysis": "diff_means", "where": {"calliper": 0.2, "effect_mcid": 0.0}}},
     "experiment.figures.zip.where.calliper", ["caliper", "effect_mcid", "timepoint"]),
    ({"zip": {**GOOD["zip"], "by": "n"}}, "experiment.figures.zip.by", ["caliper", "effect_mcid"]),
    ({"zip": {"analysis": "diff_means", "where": {"caliper": [0.2, 0.3], "effect_mcid": 0.0}}},
     "experiment.figures.zip.where.caliper", ["by"]),
    ({"zip": {**GOOD["zip"], "estimand": "sace"}}, "experiment.figures.zip.estimand", ["matched", "always_seen"]),
    ({"nested_loop": {"analysis": "diff_means"}}, "experiment.figures.nested_loop", ["measure"]),
    ({"nested_loop": {**GOOD["nested_loop"], "order": ["caliper"]}}, "experiment.figures.nested_loop.order",
     ["caliper", "effect_mcid"]),
    ({"nested_loop": {**GOOD["nested_loop"], "where": {"caliper": 0.2}}},
     "experiment.figures.nested_loop.order", ["effect_mcid"]),
    ({"nested_loop": {**GOOD["nested_loop"], "reference": "zero"}}, "experiment.figures.nested_loop.reference",
     ["number"]),
    ({"forest": {"measure": "bias", "analyses": "diff_means", "where": {"caliper": 0.2, "effect_mcid": 0.0}}},
     "experiment.figures.forest.analyses", ["list"]),
    ({"forest": {"measure": "bias"}}, "experiment.figures.forest.where", ["caliper", "effect_mcid"]),
    ({"forest": "bias"}, "experiment.figures.forest", ["measure", "where"]),
]


@pytest.mark.parametrize("figures,key,allowed", BAD, ids=[b[1].split(".", 2)[-1] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_figure_settings_are_one_line_config_errors(figures, key, allowed):
    with pytest.raises(ConfigError) as e:
        _check(figures)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{key}:"), msg
    for word in allowed:
        assert word in msg, (word, msg)


EXPERIMENTS = ["caliper_sweep", "confounding_sweep", "sample_size", "unmeasured_confounding", "truncation_by_death"]
EXPECTED = {"caliper_sweep": "zip", "confounding_sweep": "zip", "sample_size": "zip",
            "unmeasured_confounding": "nested_loop", "truncation_by_death": "nested_loop"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_figure_settings_are_valid(name):
    """The configs ask for the figures they suit, and their settings pass the pre-run check."""
    exp = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["experiment"]
    assert EXPECTED[name] in exp["figures"]
    keys = list(exp["grid"])
    names = short_names(keys)
    cfg = OmegaConf.create({"experiment": {k: v for k, v in exp.items() if k in ("figures", "heatmaps", "key_table")}})
    check_report_settings(cfg, [names[k] for k in keys])


# ----------------------------------------------------------------------------- the terminal

def test_a_run_prints_a_short_summary_not_the_key_table(tmp_path, capsys):
    from sim.cli import app
    from sim.api import compose

    cfg = compose("caliper_sweep", ["reps=4", "n_jobs=1", "progress=false", "seed=3",
                                    "method.outcomes.names=[barthel]", "method.outcomes.times=[m6]",
                                    "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"])
    start = time.perf_counter()
    assert app.run(cfg, tmp_path / "run") == 0
    out = capsys.readouterr()
    text = out.out + out.err
    run = tmp_path / "run"
    for name in ("report.md", "key_table.csv", "zip.png"):
        assert (run / name).is_file(), name
    _nonzero_png(run / "zip.png")
    report = (run / "report.md").read_text()
    assert "![zip](zip.png)" in report and "Zip plot" in report
    table = pd.read_csv(run / "key_table.csv")
    assert len(table) and not any(col in text for col in table.columns if "[" in col)
    assert "|" not in text  # no markdown table either
    lines = text.strip().splitlines()
    assert lines[0].startswith("caliper_sweep: done in") and str(run) in lines[0]
    assert len(lines) <= 6, text
    assert "zip.png" in text and "report.md" in text
    assert "python -m sim.report.curate" in text  # a curated answer exists: the command, not the answer
    assert "With the paper's caliper" not in text
    assert time.perf_counter() - start < 60
