"""The curated answer of truncation_by_death (README.md, "## Answer"), computed from the run's
summary and two tables derived in the run directory by `python -m sim.report.curate RUN_DIR`: how
far could an effect of decompression on survival move the paper's 6-month comparison of changes,
and what do the analyses built for truncation by death report?

paired_shift.csv (and the key figure drawn from it): replicate r of every condition is the same
cohort (common random numbers), so the shift a survival effect causes is the paired difference of
the same cohorts' estimates; the bias against the survivor effect would mix it with the residual
confounding that is there at a hazard ratio of 1.
matched_seen.csv: the trimming bounds assume the matched controls are seen as often as their matched
treated would be without decompression; only the potential `seen` masks of synthetic cohorts can
check it, so cohorts of the run's conditions are drawn again (SEEN_SEED, SEEN_COHORTS) and matched
as the run matches them.

Every number is quoted with its MCSE and every comparative word comes from sim.report.phrasing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.report.curate import units
from sim.report.phrasing import Est, at_least, bound_phrase, compare, fmt, number, span
from sim.report.units import UNITS_FILE, UNITS_SECTION, at_visit

KEY_TABLE = "key_table.csv"
SHIFT_FILE, SHIFT_FIGURE, SEEN_FILE = "paired_shift.csv", "paired_shift.png", "matched_seen.csv"
KEY_FIGURE = SHIFT_FIGURE
SEEN_SEED, SEEN_COHORTS = 20250730, 1000  #: matched_seen.csv: cohorts per condition (MCSE of a share ~0.002)
SEEN_CAPTION = (
    "Who is seen at each visit in the matched samples of the paper's design, from the potential `seen` masks of "
    f"{SEEN_COHORTS} cohorts per condition (no effect on the change; SeedSequence({SEEN_SEED}), the same cohorts in "
    "every condition), matched as in the run; each share is the mean over cohorts of the share in one matched "
    "sample, `_mcse` its Monte Carlo SE. `treated_seen_control` / `treated_seen_treated`: share of the matched "
    "treated seen without / with decompression; `control_seen`: share of their matched controls seen (as "
    "observed); `gap` = control_seen - treated_seen_control (0 when the trimming bounds' as-if-random assumption "
    "holds in the matched sample); `true_trim_share` = |p1 - p0| / max(p1, p0) among the matched treated, the "
    "share the bounds should trim; `true_trimmed_treated`: share of cohorts in which the treated are the group to "
    "trim (p1 > p0; empty when no cohort has one); `non_monotone`: share of the matched treated seen under the arm "
    "the effect disfavours but not under the other (0: monotone selection holds).")
SEEN_SECTION = ("Trimming bounds' assumptions in the matched samples", SEEN_FILE, SEEN_CAPTION)
EXTRA_FILES = (SHIFT_FILE, SEEN_FILE, UNITS_FILE)
README_TABLES = (SEEN_SECTION, UNITS_SECTION)
TIME = "m6"
HR = (0.7, 1.4)
SCALES = {0.0: "independent of baseline health", 1.0: "as calibrated", 2.0: "twice as dependent on it"}
UNIT = {"barthel": "Barthel points (0-100)", "eq5d": "EQ-5D-5L index", "vas": "VAS mm (0-100)",
        "face": "face-scale points (0-10)"}
SHORT = {"barthel": "points", "eq5d": "index units", "vas": "mm", "face": "points"}
SHARES = ("treated_seen_control", "treated_seen_treated", "control_seen", "gap", "true_trim_share",
          "true_trimmed_treated", "non_monotone")


# -- paired_shift.csv and its figure ------------------------------------------------------------

def paired_shift(reps: pd.DataFrame) -> pd.DataFrame:
    """Per attrition strength, visit, outcome and hazard ratio != 1: mean and MCSE of (complete-case
    matched difference in mean change at that ratio) minus (the same cohort's at ratio 1), no true
    effect on the change; beside it `effect` (MCSE `effect_mcse`), the realised effect among the matched
    treated that one MCID leaves at ratio 1 (mean truth_matched), the unit the figure's colour uses."""
    d = reps[(reps["analysis"] == "diff_means") & np.isclose(reps["effect_mcid"], 0.0)]
    wide = d.pivot_table(index=["health_scale", "timepoint", "outcome", "rep"], columns="survival_effect",
                         values="estimate", dropna=False)
    keys = ["health_scale", "timepoint", "outcome"]
    one = reps[(reps["analysis"] == "diff_means") & np.isclose(reps["effect_mcid"], 1.0)
               & np.isclose(reps["survival_effect"], 1.0)].groupby(keys)["truth_matched"]
    effect = pd.DataFrame({"effect": one.mean(), "effect_mcse": one.std(ddof=1) / np.sqrt(one.count())})
    parts = []
    for hr in (c for c in wide.columns if not np.isclose(c, 1.0)):
        diff = (wide[hr] - wide[1.0]).dropna()
        g = diff.groupby(level=keys, sort=False)
        parts.append(pd.DataFrame({"hazard_ratio": hr, "shift": g.mean(), "mcse": g.std(ddof=1) / np.sqrt(g.size()),
                                   "n": g.size()}).join(effect).reset_index())
    return pd.concat(parts, ignore_index=True).sort_values([*keys, "hazard_ratio"], kind="stable", ignore_index=True)


def shift_table(run_dir: Path) -> pd.DataFrame:
    """paired_shift.csv of the run, derived from its replicates the first time."""
    path = run_dir / SHIFT_FILE
    if not path.is_file():
        cols = ["analysis", "effect_mcid", "health_scale", "survival_effect", "timepoint", "outcome", "rep", "estimate",
                "truth_matched"]
        paired_shift(pd.read_parquet(run_dir / "replicates.parquet", columns=cols)).to_csv(path, index=False)
    return pd.read_csv(path)


def draw_shift(table: pd.DataFrame, path: Path) -> Path:
    """Heat map of the paired shift: panels visit x outcome, cells attrition strength x hazard ratio,
    each with the mean shift (MCSE) in outcome units and as a share of the realised effect; one
    diverging colour scale, the share of the realised effect, so that outcomes compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = list(dict.fromkeys(table["outcome"]))
    times = list(dict.fromkeys(table["timepoint"]))
    hrs = sorted(table["hazard_ratio"].unique())
    scales = sorted(table["health_scale"].unique(), reverse=True)
    share = table["shift"] / table["effect"]
    lim = max(0.05, float(np.ceil(share.abs().max() * 20) / 20))
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.0 * len(outcomes) + 1.2, 2.7 * len(times) + 1.2),
                             squeeze=False)
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            d = table[(table["outcome"] == o) & (table["timepoint"] == t)].set_index(["health_scale", "hazard_ratio"])
            grid = np.array([[d["shift"].get((sc, h), np.nan) / d["effect"].get((sc, h), np.nan) for h in hrs]
                             for sc in scales])
            im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
            for r, sc in enumerate(scales):
                for c, h in enumerate(hrs):
                    x = Est(d["shift"].get((sc, h), np.nan), d["mcse"].get((sc, h), np.nan))
                    ax.text(c, r, f"{_signed(x)}\n{grid[r, c]:+.2f} of effect", ha="center", va="center", fontsize=7,
                            color="white" if abs(grid[r, c]) > 0.6 * lim else "black")
            ax.set_xticks(range(len(hrs)), [f"{h:g}" for h in hrs], fontsize=7)
            ax.set_yticks(range(len(scales)), [f"{sc:g}" for sc in scales], fontsize=7)
            ax.set_title(f"{o}, {t} (shift in {UNIT.get(o, 'outcome units')})", fontsize=7)
            if i == len(times) - 1:
                ax.set_xlabel("hazard ratio of decompression on death\n(each against 1 in the same cohorts)", fontsize=7)
            if j == 0:
                ax.set_ylabel("attrition's dependence on baseline health\n(0 none, 1 as calibrated, 2 doubled)",
                              fontsize=7)
    cb = fig.colorbar(im, ax=axes, fraction=0.025, pad=0.02)
    cb.ax.tick_params(labelsize=7)
    cb.set_label("shift as a share of the realised effect among the matched treated\n"
                 "(one MCID on the change, ratio 1, same attrition and visit)", fontsize=7)
    fig.suptitle("Shift of the complete-case matched difference in mean change caused by an effect of decompression on "
                 "survival, no effect on the change\n(estimate at the hazard ratio minus the same cohort's at 1; cell: "
                 f"mean shift (MCSE) over {int(table['n'].min())} studies, outcome units, and as a share of the realised "
                 "effect;\nblue = towards decompression, red = away from it)", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# -- matched_seen.csv ---------------------------------------------------------------------------

def seen_table(cfg, cohorts: int = SEEN_COHORTS, seed: int = SEEN_SEED) -> pd.DataFrame:
    """matched_seen.csv: per condition of `cfg` without an effect on the change (hazard ratio x
    attrition strength) and visit, the mean and MCSE over `cohorts` cohorts of
    sim.methods.sensitivity.truncation.matched_seen_shares in the cohort's matched sample. Cohort k is drawn from
    the k-th child of SeedSequence(seed) in every condition (the same patients throughout)."""
    from sim.cohort.generate import generate
    from sim.jobs.conditions import conditions, matched_plan
    from sim.methods.pipeline import fit_and_match
    from sim.methods.sensitivity.truncation import matched_seen_shares

    children = np.random.SeedSequence(seed).spawn(cohorts)
    rows = []
    for cond in conditions(cfg):
        cohort_cfg = cond.cfg["cohort"]
        if cohort_cfg.get("effect_mcid", 0.0) != 0.0:
            continue
        design, spec = matched_plan(cond)
        per = {t: [] for t in spec.times}
        for child in children:
            rng = np.random.default_rng(child)
            cohort = generate(design, rng)
            _, res = fit_and_match(cohort.columns, spec, rng)
            for t in spec.times:
                per[t].append(matched_seen_shares(*cohort.seen[t], res.treated_idx, res.control_idx))
        for t, shares in per.items():
            frame = pd.DataFrame(shares)
            row = {"survival_effect": float(cohort_cfg["survival_effect"]),
                   "health_scale": float(cohort_cfg["attrition"]["health_scale"]), "timepoint": t,
                   "cohorts": int(frame["gap"].notna().sum())}
            for k in SHARES:
                x = frame[k].dropna()
                row[k] = float(x.mean()) if len(x) else np.nan
                row[f"{k}_mcse"] = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def seen_file(run_dir: Path) -> pd.DataFrame:
    """matched_seen.csv of the run, derived from its configuration the first time."""
    path = run_dir / SEEN_FILE
    if not path.is_file():
        from omegaconf import OmegaConf

        seen_table(OmegaConf.load(run_dir / ".hydra" / "config.yaml")).to_csv(path, index=False)
    return pd.read_csv(path)


# -- the answer ---------------------------------------------------------------------------------

def _cells(s: pd.DataFrame, **eq) -> pd.DataFrame:
    out = s
    for k, v in eq.items():
        out = out[np.isclose(out[k], v)] if isinstance(v, float) else out[out[k] == v]
    return out


def _est(s: pd.DataFrame, **eq) -> Est:
    d = _cells(s, **eq)
    assert len(d) == 1, (eq, len(d))
    return Est.of(d.iloc[0])


def _by_outcome(s: pd.DataFrame, **eq) -> dict[str, Est]:
    return {r.outcome: Est.of(r) for r in _cells(s, **eq).itertuples()}


def _seen(seen: pd.DataFrame, col: str, **eq) -> Est:
    d = _cells(seen, **eq)
    assert len(d) == 1, (eq, len(d))
    return Est(float(d[col].iloc[0]), float(d[f"{col}_mcse"].iloc[0]) if pd.notna(d[f"{col}_mcse"].iloc[0]) else 0.0)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _signed(x: Est) -> str:
    return ("+" if x.value > 0 else "") + fmt(x)


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    table = shift_table(run_dir)
    if not (run_dir / SHIFT_FIGURE).is_file():
        draw_shift(table, run_dir / SHIFT_FIGURE)
    seen = seen_file(run_dir)
    s = summary[summary["timepoint"] == TIME]
    base = dict(health_scale=1.0, survival_effect=1.0)
    outcomes = list(dict.fromkeys(_cells(s, analysis="diff_means", measure="bias")["outcome"]))
    shift = {(hr, o): Est(r.shift, r.mcse)
             for hr in HR for r in _cells(table, hazard_ratio=hr, health_scale=1.0, timepoint=TIME).itertuples()
             for o in [r.outcome]}
    effect = _by_outcome(s, analysis="diff_means", measure="true_matched", effect_mcid=1.0, **base)
    pairs = _est(s, analysis="diff_means", measure="mean_n_pairs", outcome=outcomes[0], effect_mcid=0.0, **base)

    # 1. the paired shift, in outcome units and as a share of the realised effect among the matched treated
    moves = "; ".join(
        f"{o} {_signed(shift[(0.7, o)])} and {_signed(shift[(1.4, o)])}, that is "
        f"{_signed(shift[(0.7, o)].ratio(effect[o]))} and {_signed(shift[(1.4, o)].ratio(effect[o]))} of the realised "
        f"effect among the matched treated ({fmt(effect[o])} {SHORT[o]})" for o in outcomes)
    side = {o: compare(shift[(0.7, o)], 0.0, "towards", "away from", "neither way") for o in outcomes}
    towards = [o for o in outcomes if side[o] == "towards"]
    away = [o for o in outcomes if side[o] == "away from"]
    empse = {hr: _by_outcome(s, analysis="diff_means", measure="empse", effect_mcid=0.0, health_scale=1.0,
                             survival_effect=hr) for hr in HR}
    rel = {hr: {o: Est(abs(shift[(hr, o)].value), shift[(hr, o)].mcse).ratio(empse[hr][o]) for o in outcomes}
           for hr in HR}
    top = {hr: max(outcomes, key=lambda o: rel[hr][o].value) for hr in HR}
    scales = sorted(table["health_scale"].unique())
    by_scale = {hr: [Est(r.shift, r.mcse) for sc in scales
                     for r in _cells(table, hazard_ratio=hr, health_scale=sc, timepoint=TIME,
                                     outcome="barthel").itertuples()]
                for hr in HR}
    bias_hr1 = [_est(s, analysis="diff_means", measure="bias", outcome="barthel", effect_mcid=0.0, survival_effect=1.0,
                     health_scale=sc) for sc in scales]
    p1 = (
        "With no effect on the change and attrition as calibrated, a decompression that lowers the hazard of death "
        "(ratio 0.7) or raises it (1.4) shifts the paper's complete-case matched difference in mean change at 6 months, "
        "against the same cohorts at ratio 1, by: " + moves + " (outcome units, improvement direction; the realised "
        "effect is the survivor effect a one-MCID effect on the change leaves among the matched treated at ratio 1). "
        f"Beyond 2 MCSE, a survival benefit pushes the comparison towards decompression for "
        f"{', '.join(towards) or 'no outcome'} and away from it for {', '.join(away) or 'no outcome'}. Against the "
        "comparison's own empirical SE at the same ratio (" + fmt(pairs) + " pairs on average), the largest shift is "
        + " and ".join(f"{fmt(rel[hr][top[hr]])} of it at ratio {hr:g} ({top[hr]}, empirical SE "
                       f"{fmt(empse[hr][top[hr]])})" for hr in HR)
        + ". With attrition " + _and([SCALES[sc] for sc in scales]) + ", the Barthel shift is "
        + ", ".join(_signed(x) for x in by_scale[0.7]) + " at ratio 0.7 and "
        + ", ".join(_signed(x) for x in by_scale[1.4]) + " at 1.4 (key figure). The figure shows this paired shift "
        "rather than the bias against the survivor effect, because at ratio 1 the comparison is already biased by "
        + span(bias_hr1) + " Barthel points over the three attrition strengths: residual confounding after matching, "
        "with no effect on survival.")

    # 2. trimming bounds: coverage, widths, how often their CI excludes 0
    lee = _cells(summary, analysis="lee_bounds")
    verdicts = {m: [at_least(Est.of(r), 0.95) for r in _cells(lee, measure=m).itertuples()]
                for m in ("coverage_always_seen", "coverage")}
    lowest = {m: Est.of(_cells(lee, measure=m).sort_values("value").iloc[0]) for m in verdicts}

    def cover(m: str) -> str:
        if all(verdicts[m]):
            return (f"in {at_least(lowest[m], 0.95)} of studies in every condition, outcome and visit "
                    f"(lowest {fmt(lowest[m])})")
        return f"in {fmt(lowest[m])} of studies in the condition where it did worst"

    at1 = dict(survival_effect=1.0, health_scale=1.0)
    width = _by_outcome(s, analysis="lee_bounds", measure="mean_bound_width", effect_mcid=0.0, **at1)
    ci_width = _by_outcome(s, analysis="lee_bounds", measure="mean_ci_width", effect_mcid=0.0, **at1)
    excl = {e: _by_outcome(s, analysis="lee_bounds", measure="mean_ci_excludes_0", effect_mcid=e, **at1)
            for e in (0.0, 1.0)}
    p2 = (
        "Trimming bounds (Lee 2009) bound the effect among the matched treated seen under both arms; their "
        "Imbens-Manski 95 % CI covered it " + cover("coverage_always_seen")
        + (f", and the survivor effect in every one too (lowest {fmt(lowest['coverage'])})"
           if all(verdicts["coverage"]) and all(verdicts["coverage_always_seen"])
           else ", and the survivor effect " + cover("coverage"))
        + ". They buy this with width: at 6 months (ratio 1, attrition as calibrated, no effect) the CI is on "
        "average " + ", ".join(f"{o} {fmt(ci_width[o])}" for o in outcomes) + " wide, against bounds "
        + ", ".join(f"{o} {fmt(width[o])}" for o in outcomes) + " wide (outcome units), so it excludes 0 in "
        + ", ".join(f"{o} {fmt(excl[0.0][o])}" for o in outcomes) + " of studies with no effect and in "
        + ", ".join(f"{o} {fmt(excl[1.0][o])}" for o in outcomes) + " with a one-MCID effect on the change.")

    # 3. trimming share and the group trimmed, against the truth among the matched treated
    trim = {hr: _est(s, analysis="lee_bounds", measure="mean_trim_share", outcome=outcomes[0], effect_mcid=0.0,
                     survival_effect=hr, health_scale=1.0) for hr in (0.7, 1.0, 1.4)}
    true_trim = {hr: _seen(seen, "true_trim_share", survival_effect=hr, health_scale=1.0, timepoint=TIME)
                 for hr in (0.7, 1.0, 1.4)}
    treated_group = {hr: _seen(seen, "true_trimmed_treated", survival_effect=hr, health_scale=1.0, timepoint=TIME)
                     for hr in HR}
    trimmed_t = {hr: _est(s, analysis="lee_bounds", measure="mean_trimmed_treated", outcome=outcomes[0],
                          effect_mcid=0.0, survival_effect=hr, health_scale=1.0) for hr in HR}
    # the group to trim is the one decompression makes seen more often among the matched treated (the treated
    # at ratio 0.7, the control at 1.4, in nearly every cohort); trimming the other is trimming the wrong group
    group = {hr: "treated" if treated_group[hr].value >= 0.5 else "control" for hr in HR}
    right = {hr: treated_group[hr] if group[hr] == "treated"
             else Est(1 - treated_group[hr].value, treated_group[hr].mcse) for hr in HR}
    wrong = {hr: Est(1 - trimmed_t[hr].value, trimmed_t[hr].mcse) if group[hr] == "treated" else trimmed_t[hr]
             for hr in HR}
    p0 = _seen(seen, "treated_seen_control", survival_effect=1.0, health_scale=1.0, timepoint=TIME)
    pc = _seen(seen, "control_seen", survival_effect=1.0, health_scale=1.0, timepoint=TIME)
    gap = _seen(seen, "gap", survival_effect=1.0, health_scale=1.0, timepoint=TIME)
    non_mono = Est(float(seen["non_monotone"].max()), 0.0)
    gap_trim = Est(abs(gap.value) / max(pc.value, p0.value), gap.mcse / max(pc.value, p0.value))
    gaps = [_seen(seen, "gap", survival_effect=1.0, health_scale=sc, timepoint=t)
            for sc in scales for t in sorted(seen["timepoint"].unique())]
    versus = compare(gap_trim, trim[1.0], "more than", "less than", "indistinguishable (within 2 MCSE) from")
    every = lambda x: x.value == 0 and x.mcse == 0  # noqa: E731  (0 in every cohort)
    p3 = (
        "The bounds trim the group seen more often. At 6 months (attrition as calibrated) their estimated trimming "
        "share averages " + _and([fmt(trim[hr]) for hr in (0.7, 1.0, 1.4)]) + " at ratio 0.7, 1 and 1.4, where the "
        "share to trim among the matched treated is " + _and([fmt(true_trim[hr]) for hr in (0.7, 1.0, 1.4)])
        + f" ({SEEN_FILE}"
        + ("; 0 in every cohort at ratio 1, where decompression changes no one's being seen" if every(true_trim[1.0])
           else "") + "); they trim the wrong group in " + fmt(wrong[0.7]) + " of the studies that trim at ratio 0.7 "
        "and " + fmt(wrong[1.4]) + " at 1.4 (the group to trim is "
        + (_and([f"the {group[hr]} group at ratio {hr:g}" for hr in HR]) + " in every cohort"
           if all(right[hr].value == 1 for hr in HR) else
           _and([f"the {group[hr]} group at ratio {hr:g} in {fmt(right[hr])} of cohorts" for hr in HR])) + "). "
        + ("Selection is monotone in these cohorts (no matched treated patient is seen under the arm the effect "
           "disfavours but not under the other). " if non_mono.value == 0 else
           f"Selection is not monotone in these cohorts (up to {number(non_mono.value)} of the matched treated are seen "
           "under the arm the effect disfavours but not under the other). ")
        + "The bounds' as-if-random assumption asks, among other things, that the matched controls be seen as often "
        "as their matched treated would be without decompression; in the same cohorts, at 6 months, the matched "
        f"controls are seen in {fmt(pc)} against {fmt(p0)} for their matched treated without decompression, a gap of "
        f"{fmt(gap)}, "
        f"{bound_phrase(gap, 0.0)} (gaps {span(gaps)} over attrition strengths and visits). Read as an effect of "
        f"decompression, that gap would trim {fmt(gap_trim)} of a group, {versus} the {fmt(trim[1.0])} trimmed on "
        "average at ratio 1"
        + (": that trimming comes mostly from chance, the difference between two shares each observed in about "
           f"{number(pairs.value, 2)} patients." if versus == "less than" else "."))

    # 4. power against the realised effect, and what the composite answers
    power = {a: _by_outcome(s, analysis=a, measure="rejection_benefit", effect_mcid=1.0, **base)
             for a in ("wilcoxon", "composite_rank")}
    real = {sc: _est(s, analysis="diff_means", measure="true_matched", outcome="barthel", effect_mcid=1.0,
                     survival_effect=1.0, health_scale=sc) for sc in scales}
    wil = {sc: _est(s, analysis="wilcoxon", measure="rejection_benefit", outcome="barthel", effect_mcid=1.0,
                    survival_effect=1.0, health_scale=sc) for sc in scales}
    saved = _by_outcome(s, analysis="composite_rank", measure="rejection_benefit", effect_mcid=0.0,
                        survival_effect=0.7, health_scale=1.0)
    alpha = 0.05
    versus_null = [bound_phrase(saved[o], alpha / 2) for o in outcomes]
    p4 = (
        "Power for a one-MCID effect on the change at 6 months (ratio 1, attrition as calibrated), each beside the "
        "realised effect among the matched treated it detects: complete-case Wilcoxon test "
        + ", ".join(f"{o} {fmt(power['wilcoxon'][o])} for {fmt(effect[o])} {SHORT[o]}" for o in outcomes)
        + "; death-ranks-worst composite " + ", ".join(f"{o} {fmt(power['composite_rank'][o])}" for o in outcomes)
        + f" ({at_visit(units(run_dir), TIME, outcomes)}). One MCID leaves a different realised effect at each "
        "attrition strength (Barthel " + _and([fmt(real[sc]) for sc in scales]) + " points with attrition "
        + _and([SCALES[sc] for sc in scales]) + "), so the Wilcoxon power there ("
        + _and([fmt(wil[sc]) for sc in scales]) + ") compares different effects under different attrition, not "
        "attrition alone. With no effect on the change but a survival benefit (ratio 0.7) the composite declares a "
        "benefit in " + ", ".join(f"{o} {fmt(saved[o])}" for o in outcomes) + " of studies ("
        + (f"each {versus_null[0]}" if len(set(versus_null)) == 1
           else "; ".join(f"{o} {v}" for o, v in zip(outcomes, versus_null)))
        + f", the rate of a two-sided {number(alpha)} test in one direction without any effect), because it answers "
        "a different question (survival and function together).")
    return "\n\n".join((p1, p2, p3, p4))
