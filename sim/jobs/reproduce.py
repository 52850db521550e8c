"""`experiment=reproduce_paper`: does the synthetic cohort look like the real one?

The replicates are the paper-size cohorts whose matched pairs are counted: one condition,
`experiment.pair_cohorts` replicates, each a cohort of `cohort.n` patients (the paper's 263 by
default) matched by the same PS fit and matching as the Monte Carlo job (`pipeline.fit_and_match`);
each also counts its matched patients seen at each visit and dead (beside Table 4's deaths and the
study file's number analysed). Every cohort setting is honoured (`cohort.n`, `cohort.confounding`,
effects, ...). Writes, in the run directory:
  calibration.csv   every published marginal beside its mean over `experiment.check_cohorts`
                    independent cohorts of `experiment.check_n` patients (the same cohort settings):
                    mean error with its MCSE, margin (|error| / tolerance), status (passed / failed /
                    not reproduced, with the reason; sim.report.calibration), the completers'
                    baseline gaps as reported targets, and the mean matched pairs beside the
                    published 51; exit code 1 only if a required target fails;
  summary.csv       the tidy table of the pairs (mean with its MCSE, failed cohorts) and of the
                    matched patients seen per visit and dead;
  cohort.csv        one synthetic cohort of `cohort.n` patients (potential outcomes included);
  table1.md         Table 1 and Fig. 1, published beside the first check cohort;
  table3.md, table4.md, table5.md
                    the paper's analysis re-run on that cohort: multivariable logistic model,
                    matched marginals with SMDs, matched delta comparisons;
  completers.md/.csv  the completers' baselines, published beside the mean over the check cohorts;
  published_sensitivity.csv/.md, published_sensitivity_by_n.csv
                    the paper's own Table 5 at the number analysed per visit (study file), and
                    every decision over the plausible range of that number (sim.report.published);
  calibration.png   synthetic vs published for every marginal;
  report.md         all of the above in one page.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sim.cohort.generate import Design, generate  # noqa: E402
from sim.cohort.model import CohortModel  # noqa: E402
from sim.jobs.config import ConfigError, _is_int  # noqa: E402
from sim.engine import RunResult, per_replicate  # noqa: E402
from sim.jobs.contract import ExperimentResult, Job  # noqa: E402
from sim.jobs.conditions import Condition, matched_plan, study_of  # noqa: E402
from sim.jobs.tidy import failure_rows, mean_rows, tidy  # noqa: E402
from sim.methods.balance import smd  # noqa: E402
from sim.methods.matching import MatchResult  # noqa: E402
from sim.methods.outcomes import wilcoxon_ranksum  # noqa: E402
from sim.methods.pipeline import MethodSpec, _matrix, fit_and_match  # noqa: E402
from sim.methods.propensity import fit_propensity, odds_ratio_table  # noqa: E402
from sim.report.calibration import calibration_over_cohorts, failed_required, pairs_row  # noqa: E402
from sim.report.published import published_sensitivity, published_sensitivity_markdown  # noqa: E402
from sim.report.published_n import decisions_by_n  # noqa: E402
from sim.report.tables import mean_sd_cell, markdown, outcome_table, table1  # noqa: E402
from sim.cohort.study import Study, needed  # noqa: E402

#: the lower bounds of the job's own settings
MINIMA = {"check_n": 1000, "check_cohorts": 10, "pair_cohorts": 2}


def published_pairs(study: Study) -> int:
    return study.raw["propensity_model"]["matching"]["pairs"]


def pairs_replicate(plan: tuple[Design, MethodSpec], rng: np.random.Generator) -> pd.DataFrame:
    """One paper-size cohort, matched as the Monte Carlo job matches: its number of pairs, and per
    group of the matched the patients seen at each visit (`seen_<visit>_<group>`) and dead by
    the end of follow-up (`died_<group>`): the model's answer to Table 5's missing n per visit."""
    design, spec = plan
    cols = generate(design, rng).columns
    _, res = fit_and_match(cols, spec, rng)
    row = {"n_pairs": res.n_pairs}
    for g, idx in (("treated", res.treated_idx), ("control", res.control_idx)):
        for t in design.model.follow_up:
            row[f"seen_{t}_{g}"] = int(np.sum(cols[f"seen_{t}"][idx]))
        row[f"died_{g}"] = int(np.sum(cols["died"][idx]))
    return pd.DataFrame([row])


def matched_counts(replicates: pd.DataFrame) -> dict[str, float]:
    """Mean over the pair cohorts of each matched count (seen per visit, died) per group."""
    cols = [c for c in replicates.columns if c.startswith(("seen_", "died_"))]
    return {c: float(replicates[c].mean()) for c in cols}


def table3(study: Study, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    pm = study.raw["propensity_model"]
    names = list(pm["covariates"])
    fit = fit_propensity(_matrix(columns, names), np.asarray(columns["treated"], dtype=np.int8))
    ors = odds_ratio_table(fit, names)
    rows = []
    for _, r in ors.iterrows():
        pub = pm["odds_ratios"][r["covariate"]]
        rows.append({"factor": r["covariate"], "published OR (95% CI)": f"{pub['or']} ({pub['ci'][0]}-{pub['ci'][1]})",
                     "published p": pub.get("p", ""),  # optional in the study file
                     "synthetic OR (95% CI)": f"{r['odds_ratio']:.2f} ({r['ci_low']:.2f}-{r['ci_high']:.2f})",
                     "synthetic p": f"{r['p_value']:.2g}"})
    return pd.DataFrame(rows)


def table4(study: Study, model: CohortModel, columns: Mapping[str, np.ndarray], res: MatchResult,
           denominator: str) -> pd.DataFrame:
    """Matched marginals (synthetic, with SMD) beside the published Table 4."""
    m = study.raw["matched"]
    ti, ci = res.treated_idx, res.control_idx
    treated = np.zeros(len(columns["treated"]), bool)
    treated[ti] = True
    rows = []

    def smd_of(x: np.ndarray) -> float:
        both = np.concatenate([x[ti], x[ci]])
        t = np.concatenate([np.ones(len(ti), bool), np.zeros(len(ci), bool)])
        return float(smd(both[:, None], t, denominator=denominator)[0])

    for name, pub in (m.get("continuous") or {}).items():
        x = np.asarray(columns[name], dtype=float)
        rows.append({"variable": f"{name}, mean (SD)",
                     "published treated": f"{pub['treated'][0]} ({pub['treated'][1]})",
                     "published control": f"{pub['control'][0]} ({pub['control'][1]})",
                     "synthetic treated": mean_sd_cell(x[ti]), "synthetic control": mean_sd_cell(x[ci]),
                     "synthetic SMD": f"{smd_of(x):.2f}"})
    n_pub = m["n"]
    for name, (kt, kc) in (m.get("counts") or {}).items():
        try:
            x = model.numeric_column(columns, name)
        except KeyError:
            continue
        rows.append({"variable": f"{name}, n (%)",
                     "published treated": f"{kt} ({100 * kt / n_pub['treated']:.1f}%)",
                     "published control": f"{kc} ({100 * kc / n_pub['control']:.1f}%)",
                     "synthetic treated": f"{int(x[ti].sum())} ({100 * x[ti].mean():.1f}%)",
                     "synthetic control": f"{int(x[ci].sum())} ({100 * x[ci].mean():.1f}%)",
                     "synthetic SMD": f"{smd_of(x):.2f}"})
    head = {"variable": "matched pairs", "published treated": str(n_pub["treated"]),
            "published control": str(n_pub["control"]), "synthetic treated": str(len(ti)),
            "synthetic control": str(len(ci)), "synthetic SMD": ""}
    return pd.DataFrame([head] + rows)


def table5(study: Study, columns: Mapping[str, np.ndarray], res: MatchResult) -> pd.DataFrame:
    ti, ci = res.treated_idx, res.control_idx
    rows = []
    for name, o in study.outcomes.items():
        for t in study.follow_up:
            d = np.asarray(columns[f"{name}_delta_{t}"], dtype=float)
            pub = o["table5"]
            p = wilcoxon_ranksum(d[ti], d[ci]).p_value if len(ti) else float("nan")
            rows.append({"delta": f"{name} {t}",
                         "published treated": f"{pub['treated'][t][0]} ({pub['treated'][t][1]})",
                         "published control": f"{pub['control'][t][0]} ({pub['control'][t][1]})",
                         "published p": (pub.get("p") or {}).get(t, ""),
                         "synthetic treated": mean_sd_cell(d[ti]), "synthetic control": mean_sd_cell(d[ci]),
                         "synthetic p (Wilcoxon)": f"{p:.2f}"})
    return pd.DataFrame(rows)


STATUS_COLOURS = {"passed": "C0", "failed": "red", "not reproduced": "orange"}


def calibration_figure(table: pd.DataFrame, path: Path) -> None:
    """Required targets: published vs mean synthetic proportion, mean errors in SDs and relative SD
    errors (each a mean over the check cohorts), coloured by status."""
    t = table[table["required"].astype(bool) & ~table["tolerance"].str.contains("CI")]
    props = t[t["tolerance"].str.endswith("abs")]
    means = t[t["quantity"].str.endswith("mean")]
    sds = t[t["quantity"].str.endswith("SD")]
    colour = lambda d: [STATUS_COLOURS.get(x, "grey") for x in d["status"]]  # noqa: E731
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.6))
    ax[0].scatter(props["target"], props["synthetic"], s=10, c=colour(props))
    lim = [0, max(props["target"].max(), props["synthetic"].max()) * 1.05]
    ax[0].plot(lim, lim, "k-", lw=0.8)
    ax[0].fill_between(lim, [lim[0] - 0.03, lim[1] - 0.03], [lim[0] + 0.03, lim[1] + 0.03], alpha=0.15)
    ax[0].set(xlabel="published proportion", ylabel="synthetic proportion (mean over cohorts)",
              title="Table 1 proportions (band: +/- 3 points)")
    for a, d, tol, lab in ((ax[1], means, 0.1, "mean error / published SD"),
                           (ax[2], sds, 0.15, "SD relative error")):
        y = np.arange(len(d))
        a.errorbar(d["error"], y, xerr=2 * d["error_mcse"], fmt="none", ecolor="k", lw=0.5)
        a.scatter(d["error"], y, s=10, c=colour(d))
        a.axvspan(-tol, tol, alpha=0.15)
        a.axvline(0, color="k", lw=0.8)
        a.set_yticks(y, [f"{q} [{g}]" for q, g in zip(d["quantity"], d["group"])], fontsize=4.5)
        a.set(xlabel=lab + " (mean, ±2 MCSE)", title=f"{lab} (band: +/- {tol})")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def calibration_summary(table: pd.DataFrame, cohorts: int, n: int) -> str:
    """One paragraph: the statuses of the required targets, the largest margins, the MCSE."""
    req = table[table["required"].astype(bool)]
    counts = req["status"].value_counts()
    top = req.sort_values("margin", ascending=False).head(3)
    worst = req.loc[req["margin_mcse"].idxmax()]
    near = req[(req["margin"] - 1).abs() <= 2 * req["margin_mcse"]]
    return (f"{len(req)} required calibration targets, each judged on its error averaged over {cohorts} independent "
            f"cohorts of n = {n}: {int(counts.get('passed', 0))} passed, {int(counts.get('failed', 0))} failed, "
            f"{int(counts.get('not reproduced', 0))} not reproduced. Largest margins (|mean error| / tolerance): "
            + "; ".join(f"{r['quantity']} [{r['group']}] {r['margin']:.3f} (MCSE {r['margin_mcse']:.3f}, "
                        f"{r['status']})" for _, r in top.iterrows())
            + f". The MCSE of a margin is at most {worst['margin_mcse']:.3f} ({worst['quantity']} [{worst['group']}]); "
            + (f"{len(near)} within 2 MCSE of its tolerance ("
               + "; ".join(f"{r['quantity']} [{r['group']}]" for _, r in near.iterrows()) + ")."
               if len(near) else "none lies within 2 MCSE of its tolerance."))


def _show(table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = table[cols].copy()
    for c in ("target", "synthetic", "error", "error_mcse", "tolerance_value", "margin", "margin_mcse", "published_se"):
        if c in out:
            out[c] = [f"{x:.4g}" if x == x else "" for x in out[c]]
    return out


def matched_counts_markdown(counts: Mapping[str, float], study: Study, pairs: float, k: int, n: int) -> str:
    """The model's matched samples beside Table 4's deaths and the study file's n per visit."""
    if not counts:
        return ""
    sizes = study.analysed_sizes() if "analysed" in study.report else {}
    deaths = study.report.get("analysed", {}).get("deaths", {})
    words, size = study.words, study.raw["matched"]["n"]["treated"]
    lines = [f"Cross-check from the calibrated model: over {k} synthetic cohorts of n = {n} matched as the paper "
             f"did (mean {pairs:.1f} pairs), the matched groups ({words['treated']} / {words['control']}) have"]
    lines.append(f"- died by the end of follow-up: {counts['died_treated']:.1f} / {counts['died_control']:.1f}"
                 + (f" (Table 4: {deaths['treated']} / {deaths['control']} of {size})" if deaths else ""))
    for t in study.follow_up:
        lines.append(f"- a change at {t}: {counts[f'seen_{t}_treated']:.1f} / {counts[f'seen_{t}_control']:.1f}"
                     + (f" (study file: n {sizes[t]['treated']['n']} / {sizes[t]['control']['n']}, plausible "
                        f"{sizes[t]['treated']['low']}-{sizes[t]['treated']['high']} / "
                        f"{sizes[t]['control']['low']}-{sizes[t]['control']['high']})" if t in sizes else ""))
    return "\n".join(lines) + "\n\nThe model's counts rest on its own assumptions (death timing calibrated to " \
        "Table 1's survival days, missed visits of the living as conf/cohort sets them); they are a check on the " \
        "study file's range, not a source of it.\n"


class ReproduceJob(Job):
    """Calibration check, matched pairs over paper-size cohorts, Tables 1 and 3-5 re-run."""

    name = "reproduce"
    simulate = per_replicate(pairs_replicate)

    def __init__(self, cfg):
        super().__init__(cfg)
        self._plan: tuple[Design, MethodSpec] | None = None

    def reps(self) -> int:
        return int(self.cfg.experiment.pair_cohorts)

    def check(self, conds: list[Condition]) -> None:
        if len(conds) != 1:
            raise ConfigError(f"experiment.grid: the reproduce job runs one condition, got {len(conds)}; "
                              "allowed: no grid")
        for key, low in MINIMA.items():
            value = self.cfg.experiment.get(key)
            if not _is_int(value) or value < low:
                raise ConfigError(f"experiment.{key}: must be a whole number >= {low}, got {value!r}")
        study = study_of(conds[0].cfg)
        if "matched" not in study.raw:  # optional in a study file; this job compares its Table 4 with it
            raise needed(study.name, "matched", "experiment reproduce_paper: the published matched sample, Table 4")
        if "analysed" not in study.report:  # optional too; this job reports Table 5 at the number analysed
            raise needed(study.name, "analysed", "experiment reproduce_paper: the number analysed per visit")

    def plan(self, cond: Condition) -> tuple[Design, MethodSpec]:
        """The cohort design at `cohort.n` (every cohort setting honoured) and the method."""
        if self._plan is None:
            self._plan = matched_plan(cond)
        return self._plan

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        reps = run.replicates.assign(outcome="all", timepoint="all", analysis="matching")
        counts = {c: f"mean_matched_{c}" for c in reps.columns if c.startswith(("seen_", "died_"))}
        pairs = mean_rows(reps, {"n_pairs": "mean_n_pairs", **counts}) if "n_pairs" in reps else []
        return tidy([*pairs, failure_rows(run.failures, conds, self.reps())], conds)

    def finish(self, result: ExperimentResult) -> None:
        """result.tables: calibration (judged over the check cohorts, with the completers' gaps and
        the mean pairs), completers, cohort (one cohort of cohort.n), table1, fig1 (on the first
        check cohort), table3, table4, table5 (on that cohort of cohort.n), published (Table 5 at
        the number analysed, with its decisions over the plausible range) and published_by_n;
        exit code 1 if a required calibration target fails."""
        cond = result.conditions[0]
        design, spec = self.plan(cond)
        study, model, seed = study_of(cond.cfg), design.model, int(self.cfg.seed)
        check = calibration_over_cohorts(study, model, design, n=int(self.cfg.experiment.check_n),
                                         cohorts=int(self.cfg.experiment.check_cohorts), seed=seed)
        reps = result.replicates.sort_values("rep") if len(result.replicates) else result.replicates
        pairs = reps["n_pairs"].to_numpy(dtype=float) if len(reps) else np.array([])
        table = pd.concat([check.table, pd.DataFrame([pairs_row(pairs, published_pairs(study), design.n)])],
                          ignore_index=True)
        rng = np.random.default_rng([seed, 2])
        small = generate(design, rng)
        _, res = fit_and_match(small.columns, spec, rng)
        label = f"synthetic (n={check.n}, check cohort 1 of {check.cohorts})"
        published = published_sensitivity(study)
        result.tables.update(
            calibration=table, cohort=small.to_frame(model),
            table1=table1(study, check.first.columns, label=label),
            fig1=outcome_table(study, check.first.columns, "fig1", label=label), table3=table3(study, small.columns),
            table4=table4(study, model, small.columns, res, spec.balance_denominator),
            table5=table5(study, small.columns, res), published=published, published_by_n=decisions_by_n(published),
            completers=check.completers,
            matched_counts=pd.DataFrame([matched_counts(reps)]) if len(reps) else pd.DataFrame())
        result.exit_code = int(len(failed_required(table)) > 0)

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report.montecarlo import atomic_csv, atomic_text
        from sim.report.settings import draws_figures, figure_lines

        t, n = result.tables, len(result.tables["cohort"])
        study = study_of(result.conditions[0].cfg)
        table = t["calibration"]
        atomic_csv(table, out_dir / "calibration.csv")
        atomic_csv(result.summary, out_dir / "summary.csv")
        if draws_figures(self.cfg):
            calibration_figure(table, out_dir / "calibration.png")
        atomic_csv(t["cohort"], out_dir / "cohort.csv")
        atomic_csv(t["published"], out_dir / "published_sensitivity.csv")
        atomic_csv(t["published_by_n"], out_dir / "published_sensitivity_by_n.csv")
        atomic_csv(t["completers"], out_dir / "completers.csv")
        pairs = result.replicates["n_pairs"] if len(result.replicates) else pd.Series(dtype=float)
        cohorts, check_n = int(self.cfg.experiment.check_cohorts), int(self.cfg.experiment.check_n)
        mc = t["matched_counts"]
        counts = matched_counts_markdown(mc.iloc[0].to_dict() if len(mc) else {}, study,
                                         float(pairs.mean()) if len(pairs) else float("nan"), len(pairs), n)
        texts = {
            "table1.md": "# Table 1 and Fig. 1: published vs synthetic\n\n" + markdown(t["table1"]) + "\n"
                         + markdown(t["fig1"]),
            "table3.md": f"# Table 3 (multivariable logistic), synthetic cohort n = {n}\n\n" + markdown(t["table3"]),
            "table4.md": f"# Table 4 (after matching), synthetic cohort n = {n}\n\n" + markdown(t["table4"]),
            "table5.md": f"# Table 5 (matched deltas), synthetic cohort n = {n}\n\n" + markdown(t["table5"]),
            "completers.md": "# Who has a change: the baseline of the patients seen at each visit\n\n"
                             "Published: the baseline of all patients (Fig. 1) and of those with a change at the "
                             "visit (Fig. 1 at the visit minus the Table 2 change); synthetic: the same, mean over "
                             f"{cohorts} check cohorts of n = {check_n} (synthetic_gap_mcse: its MCSE), with the "
                             "shares seen and dead at the visit. calibration.csv judges the gaps (rows "
                             "\"completers' baseline gap\").\n\n" + markdown(t["completers"]),
            "published_sensitivity.md": published_sensitivity_markdown(t["published"], study) + "\n" + counts,
        }
        for name, text in texts.items():
            atomic_text(text, out_dir / name)
        failed = failed_required(table)
        published = published_pairs(study)
        summary = (calibration_summary(table, cohorts, check_n) + f" Mean pairs {pairs.mean():.1f} (paper: "
                   f"{published:g}) over {len(pairs)} cohorts of n = {n}"
                   + (f" ({len(result.failures)} cohorts failed, see summary.csv)" if len(result.failures) else "")
                   + ".")
        cols = ["source", "quantity", "group", "target", "synthetic", "error", "error_mcse", "tolerance", "margin",
                "status", "reason"]
        not_rep = table[table["status"] == "not reproduced"]
        gaps = table[table["quantity"].str.contains("completers' baseline gap")]
        closest = table[table["required"].astype(bool)].sort_values("margin", ascending=False).head(15)
        report = "\n".join([
            "# reproduce_paper", "", summary, "",
            *figure_lines(self.cfg, [out_dir / "calibration.png"]), "",
            "## Failed required targets", "", markdown(_show(failed, cols)) if len(failed) else "none", "",
            "## Not reproduced (the model cannot reach them; listed, not failed)", "",
            markdown(_show(not_rep, cols)) if len(not_rep) else "none", "",
            "## The completers' baseline gaps (reported targets)", "",
            "Gap = baseline of the patients with a change at the visit minus everyone's (outcome units; published: "
            "Fig. 1 at the visit minus the Table 2 change, minus Fig. 1's baseline); published_se: the approximate "
            "sampling SE of the published gap itself (the model's share seen).", "",
            markdown(_show(gaps, ["quantity", "group", "target", "synthetic", "error", "error_mcse", "tolerance",
                                  "published_se", "status"])), "",
            "## Required targets closest to their tolerance", "",
            markdown(_show(closest, ["source", "quantity", "group", "target", "synthetic", "error", "error_mcse",
                                     "error_min", "error_max", "margin", "margin_mcse", "status"])), "",
            "## Reported, not required", "",
            markdown(_show(table[~table["required"].astype(bool) & ~table.index.isin(gaps.index)], cols)), "",
            *texts.values(),
        ])
        atomic_text(report, out_dir / "report.md")
        print(summary)
        if len(failed):
            print("calibration targets failed:\n" + failed[["source", "quantity", "group", "target", "synthetic"]]
                  .to_string(index=False), file=sys.stderr)
            return 1
        return 0
