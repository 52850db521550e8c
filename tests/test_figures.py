"""The figures methods papers use (sim.report.method_figures): the zip plot of CI coverage (Morris, White &
Crowther 2019), the nested-loop plot of a multi-factor grid (Rücker & Schwarzer 2014) and a forest
(lollipop) plot, drawn from small synthetic frames; the summary figures (sim.report.figures: a measure
against the first factor, heatmaps) read alone: a 'none' level last past a break, axis labels with
units, one legend under the panels, the MCSE bars named on the figure, shared y axes where the panels
compare one scale, colour bars, titles that fit; their settings (experiment.figures, checked before a
run); and the end of a run on the terminal (a short summary, never the key table)."""

from __future__ import annotations

import itertools
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
from sim.report import figures as G  # noqa: E402
from sim.report import method_figures as F  # noqa: E402
from sim.report import plot_parts as P  # noqa: E402
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
        _one_figure_legend(fig)
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
    fig = F.forest_figure(s, "rejection", "forest by b", where={"a": 2.0, "c": "y"}, by="b", reference=0.05)
    try:
        labels = _one_figure_legend(fig)
        assert labels[:3] == ["b = 0.1", "b = 0.5", "no b"] and "alpha = 0.05" in labels  # 'none' last
    finally:
        plt.close(fig)
    assert F.forest_plot(s, "bias", tmp_path / "x.png", "", where={"a": 3.0}) is None


# ----------------------------------------------------------------------------- summary figures

CALIPERS = [None, 0.05, 0.1, 0.2, 0.5, 1.0]  # no caliper first, as the grid lists it
SCALES = {"barthel": 10.0, "eq5d": 0.01}  # outcomes in different units


def caliper_summary() -> pd.DataFrame:
    """A tidy summary over caliper (with no caliper) x effect, two outcomes of different scales, two
    visits: bias (outcome units), rejection, coverage and mean pairs growing with the caliper
    (no caliper = widest = 2)."""
    rows = []
    for cal, eff, (outcome, scale), time_ in itertools.product(CALIPERS, [0.0, 1.0], SCALES.items(), ("m1", "m6")):
        w = 2.0 if cal is None else cal
        base = dict(caliper=np.nan if cal is None else cal, effect_mcid=eff, outcome=outcome, timepoint=time_, n=100)
        for analysis in ("est", "alt"):
            for measure, value, mcse in (("bias", scale * w * (2 if time_ == "m6" else 1), 0.05 * scale),
                                         ("rejection", 0.05 + 0.3 * eff * w, 0.01), ("coverage", 0.95 - 0.1 * w, 0.01),
                                         ("mean_n_pairs", 50 + 10 * w, 0.5)):
                rows.append({**base, "analysis": analysis, "measure": measure, "value": value, "mcse": mcse})
    return pd.DataFrame(rows)


def _one_figure_legend(fig) -> list[str]:
    """The figure's one legend (figure-level, none in a panel): its labels."""
    assert len(fig.legends) == 1, len(fig.legends)
    assert not [ax for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _footnote(fig) -> str:
    return " ".join(t.get_text().replace("\n", " ") for t in fig.texts)


def _measure(measure: str, analyses=("est",), title: str = "t"):
    return G.measure_figure(caliper_summary(), ["caliper", "effect_mcid"], measure, list(analyses), title, measure,
                            reference={"bias": 0.0, "rejection": 0.05, "coverage": 0.95}.get(measure))


def test_a_missing_level_goes_last_past_a_break():
    xa = P.XAxis.of(pd.Series([np.nan, 0.05, 0.1, 0.2, 0.5, 1.0]), "caliper")
    assert xa.levels[:-1] == [0.05, 0.1, 0.2, 0.5, 1.0] and xa.levels[-1] is None
    assert xa.ticklabels()[-1].replace("\n", " ") == "none (no caliper)"
    assert xa.log and np.allclose(xa.pos[:-1], np.log10(xa.levels[:-1]))  # numbers at their (log) positions
    assert xa.pos[-1] - xa.pos[-2] > np.diff(xa.pos[:-1]).max()  # past a break, not one more step
    lin = P.XAxis.of(pd.Series([3.0, 0.0, 1.0, 0.5]), "confounding")
    assert not lin.log and np.allclose(lin.pos, [0, 0.5, 1, 3])
    for fig in (_measure("rejection"), G.scalar_figure(caliper_summary(), ["caliper", "effect_mcid"],
                                                       "mean_n_pairs", "pairs", "mean pairs")):
        try:
            for ax in fig.axes:
                fmt = ax.xaxis.get_major_formatter()  # the tick labels (hidden under a panel above another)
                ticks = [fmt(x, i).replace("\n", " ") for i, x in enumerate(ax.get_xticks())]
                assert ticks == ["0.05", "0.1", "0.2", "0.5", "1", "none (no caliper)"]
                assert np.all(np.diff(ax.get_xticks()) > 0)
                # 'none' is drawn apart: every joined line stays left of the break, its point right of it
                (brk,) = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "break"]
                joined = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 2]
                apart = [ln for ln in ax.get_lines() if ln.get_gid() == "apart"]
                assert len(joined) == len(apart) == 2  # a line and a 'none' point per effect
                assert all(max(ln.get_xdata()) < brk < min(p.get_xdata()) for ln, p in zip(joined, apart))
            assert "none (no caliper)" in _footnote(fig)
        finally:
            plt.close(fig)


def test_axis_labels_name_the_factor_and_its_unit():
    assert P.factor_label("caliper") == P.factor_label("method.matching.caliper") == "caliper (SD of the logit PS)"
    assert "published log-ORs" in P.factor_label("cohort.confounding")
    assert P.factor_label("cohort.n") == "cohort size N (patients)"
    assert P.factor_label("treatment_log_or") == "odds ratio of U on decompression"
    assert P.factor_label("cohort.some_new_factor") == "some new factor"  # the fallback: its name, spaced
    assert P.factor_label("cohort.frailty_log_or") == "frailty odds ratio"
    assert P.level_text("caliper", np.nan, legend=True) == "no caliper"
    assert P.level_text("treatment_log_or", np.log(2.0)) == "2"
    assert P.level_text("effect_mcid", 1.0, legend=True) == "true effect 1 MCID"
    fig = _measure("bias")
    try:
        assert fig._supxlabel.get_text() == "caliper (SD of the logit PS; log scale)"
        assert [ax.get_title() for ax in fig.axes[:2]] == ["barthel, m1 (Barthel points)", "eq5d, m1 (EQ-5D index)"]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("measure", ["bias", "rejection", "coverage"])
def test_one_legend_under_the_panels_and_the_bars_named(measure):
    fig = _measure(measure, analyses=("est", "alt"))
    try:
        labels = _one_figure_legend(fig)
        assert "est, true effect 0 MCID" in labels or {"est", "true effect 0 MCID"} <= set(labels)
        assert "2 MCSE" in _footnote(fig)
        fig.canvas.draw()
        leg = fig.legends[0].get_window_extent()
        assert all(leg.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # under every panel
    finally:
        plt.close(fig)


def test_proportions_share_one_y_axis_and_a_bias_one_per_outcome():
    for measure in ("rejection", "coverage"):
        fig = _measure(measure)
        try:
            limits = {tuple(np.round(ax.get_ylim(), 9)) for ax in fig.axes}
            assert len(limits) == 1, limits
            lo, hi = limits.pop()
            assert -0.02 <= lo and hi <= 1.02
        finally:
            plt.close(fig)
    fig = _measure("bias")
    try:
        axes = np.array(fig.axes).reshape(2, 2)  # rows: visits, columns: outcomes
        for j in range(2):
            assert axes[0, j].get_ylim() == axes[1, j].get_ylim()  # one outcome: one scale
        assert axes[0, 0].get_ylim()[1] > 100 * axes[0, 1].get_ylim()[1]  # outcomes keep their own units
    finally:
        plt.close(fig)


def test_heatmaps_have_a_colour_bar_the_mcse_and_readable_axes():
    s = caliper_summary()
    fig = G.heatmap_figure(s, "caliper", "effect_mcid", "rejection", "est", "heat", complement=True)
    try:
        bars = {im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None}
        assert len(bars) == 1 and bars.pop().ax.get_ylabel() == "1 - rejection rate (two-sided)"
        panel = fig.axes[0]
        assert [t.get_text() for t in panel.get_xticklabels()][-1] == "none\n(no caliper)"
        assert fig.axes[2].get_xlabel() == "caliper (SD of the logit PS)"
        assert panel.get_ylabel() == "true effect on the change (MCID)"
        cells = [t.get_text() for t in panel.texts]
        assert len(cells) == 12 and all(c.endswith("(0.010)") for c in cells)  # value (MCSE)
        assert "Monte Carlo SE" in _footnote(fig)
    finally:
        plt.close(fig)
    fig = G.heatmap_figure(s, "caliper", "effect_mcid", "bias", "est", "bias heat", where={"timepoint": "m6"})
    try:
        bars = [im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None]
        labels = sorted({b.ax.get_xlabel() for b in bars})
        assert labels == ["bias (Barthel points)", "bias (EQ-5D index)"]  # one scale per outcome's units
    finally:
        plt.close(fig)


def test_long_titles_wrap_to_fit_and_a_bare_estimand_is_completed():
    long = "Bias of the difference in mean change " * 6 + "vs the matched"
    fig = G.scalar_figure(caliper_summary(), ["caliper"], "mean_n_pairs", long, "mean pairs")
    try:
        fig.canvas.draw()
        title, box = fig._suptitle, fig.bbox
        assert "\n" in title.get_text()
        ext = title.get_window_extent()
        assert box.x0 <= ext.x0 and ext.x1 <= box.x1 and ext.y1 <= box.y1
        for t in fig.texts:
            assert t.get_window_extent().x1 <= box.x1, t.get_text()
    finally:
        plt.close(fig)
    fig = _measure("bias", title="Bias of the difference in mean change (est) vs the matched")
    try:
        assert fig._suptitle.get_text().replace("\n", " ").endswith("vs the true effect (estimand: matched)")
    finally:
        plt.close(fig)


def test_summary_figures_write_pngs(tmp_path):
    s = caliper_summary()
    _nonzero_png(G.measure_plot(s, ["caliper", "effect_mcid"], "bias", ["est"], tmp_path / "bias.png", "b", "bias"))
    _nonzero_png(G.scalar_plot(s, ["caliper", "effect_mcid"], "mean_n_pairs", tmp_path / "pairs.png", "p", "pairs"))
    _nonzero_png(G.heatmap_plot(s, "caliper", "effect_mcid", "coverage", "est", tmp_path / "h.png", "h"))
    assert G.measure_plot(s, ["caliper"], "nosuch", ["est"], tmp_path / "x.png", "", "") is None
    assert G.heatmap_plot(s, "caliper", "effect_mcid", "bias", "est", tmp_path / "x.png", "", where={"caliper": 3}) is None


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
    plan, *lines = text.strip().splitlines()  # the run's plan (conditions, disk estimate), then the summary
    assert plan.startswith("caliper_sweep: 1 condition") and "disk:" in plan, text
    assert lines[0].startswith("caliper_sweep: done in") and str(run) in lines[0]
    assert len(lines) <= 6, text
    assert "zip.png" in text and "report.md" in text
    assert "python -m sim.report.curate" in text  # a curated answer exists: the command, not the answer
    assert "With the paper's caliper" not in text
