"""`experiment=reproduce_paper`: does the synthetic cohort look like the real one?

The replicates are the paper-size cohorts whose matched pairs are counted: one condition,
`experiment.pair_cohorts` replicates, each a cohort of `cohort.n` patients (the paper's 263 by
default) matched by the same PS fit and matching as the Monte Carlo job (`pipeline.fit_and_match`).
Every cohort setting is honoured (`cohort.n`, `cohort.confounding`, effects, ...). Writes, in the
run directory:
  calibration.csv   every published marginal beside its value in a large synthetic cohort of
                    `experiment.check_n` patients (the same cohort settings), with the acceptance
                    rule (exit code 1 if a required target fails), and the mean matched pairs
                    beside the published 51;
  summary.csv       the tidy table of the pairs (mean with its MCSE, failed cohorts);
  cohort.csv        one synthetic cohort of `cohort.n` patients (potential outcomes included);
  table1.md         Table 1 and Fig. 1, published beside synthetic;
  table3.md, table4.md, table5.md
                    the paper's analysis re-run on that cohort: multivariable logistic model,
                    matched marginals with SMDs, matched delta comparisons;
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

from sim.cohort.checks import calibration_table, completers_table, failed_required, matched_pairs_row  # noqa: E402
from sim.cohort.generate import Design, generate  # noqa: E402
from sim.cohort.model import CohortModel, numeric_column  # noqa: E402
from sim.config import ConfigError, _is_int  # noqa: E402
from sim.engine import RunResult, per_replicate  # noqa: E402
from sim.experiment import ExperimentResult, Job  # noqa: E402
from sim.jobs.conditions import Condition, matched_plan, study_of  # noqa: E402
from sim.jobs.tidy import failure_rows, mean_rows, tidy  # noqa: E402
from sim.methods.balance import smd  # noqa: E402
from sim.methods.matching import MatchResult  # noqa: E402
from sim.methods.outcomes import wilcoxon_ranksum  # noqa: E402
from sim.methods.pipeline import MethodSpec, _matrix, fit_and_match  # noqa: E402
from sim.methods.propensity import fit_propensity, odds_ratio_table  # noqa: E402
from sim.report.published import published_sensitivity, published_sensitivity_markdown
from sim.report.tables import mean_sd_cell, markdown, outcome_table, table1  # noqa: E402
from sim.study import Study  # noqa: E402

#: the lower bounds of the job's own settings
MINIMA = {"check_n": 1000, "pair_cohorts": 2}


def published_pairs(study: Study) -> int:
    return study.raw["propensity_model"]["matching"]["pairs"]


def pairs_replicate(plan: tuple[Design, MethodSpec], rng: np.random.Generator) -> pd.DataFrame:
    """One paper-size cohort, matched as the Monte Carlo job matches: its number of pairs."""
    design, spec = plan
    _, res = fit_and_match(generate(design, rng).columns, spec, rng)
    return pd.DataFrame({"n_pairs": [res.n_pairs]})


def table3(study: Study, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    pm = study.raw["propensity_model"]
    names = list(pm["covariates"])
    fit = fit_propensity(_matrix(columns, names), np.asarray(columns["treated"], dtype=np.int8))
    ors = odds_ratio_table(fit, names)
    rows = []
    for _, r in ors.iterrows():
        pub = pm["odds_ratios"][r["covariate"]]
        rows.append({"factor": r["covariate"], "published OR (95% CI)": f"{pub['or']} ({pub['ci'][0]}-{pub['ci'][1]})",
                     "published p": pub["p"],
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

    for name, pub in m["continuous"].items():
        x = np.asarray(columns[name], dtype=float)
        rows.append({"variable": f"{name}, mean (SD)",
                     "published treated": f"{pub['treated'][0]} ({pub['treated'][1]})",
                     "published control": f"{pub['control'][0]} ({pub['control'][1]})",
                     "synthetic treated": mean_sd_cell(x[ti]), "synthetic control": mean_sd_cell(x[ci]),
                     "synthetic SMD": f"{smd_of(x):.2f}"})
    n_pub = m["n"]
    for name, (kt, kc) in m["counts"].items():
        try:
            x = numeric_column(model, columns, name)
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
                         "published p": pub["p"][t],
                         "synthetic treated": mean_sd_cell(d[ti]), "synthetic control": mean_sd_cell(d[ci]),
                         "synthetic p (Wilcoxon)": f"{p:.2f}"})
    return pd.DataFrame(rows)


def calibration_figure(table: pd.DataFrame, path: Path) -> None:
    t = table[~table["tolerance"].str.contains("CI|reported")]
    props = t[t["tolerance"].str.endswith("abs")]
    means = t[t["quantity"].str.endswith("mean") & t["required"]]
    sds = t[t["quantity"].str.endswith("SD")]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.6))
    ax[0].scatter(props["target"], props["synthetic"], s=10, c=np.where(props["ok"], "C0", "red"))
    lim = [0, max(props["target"].max(), props["synthetic"].max()) * 1.05]
    ax[0].plot(lim, lim, "k-", lw=0.8)
    ax[0].fill_between(lim, [lim[0] - 0.03, lim[1] - 0.03], [lim[0] + 0.03, lim[1] + 0.03], alpha=0.15)
    ax[0].set(xlabel="published proportion", ylabel="synthetic proportion",
              title="Table 1 proportions (band: +/- 3 points)")
    for a, d, tol, lab in ((ax[1], means, 0.1, "mean error / published SD"),
                           (ax[2], sds, 0.15, "SD relative error")):
        y = np.arange(len(d))
        a.scatter(d["error"], y, s=10, c=np.where(d["ok"], "C0", "red"))
        a.axvspan(-tol, tol, alpha=0.15)
        a.axvline(0, color="k", lw=0.8)
        a.set_yticks(y, [f"{q} [{g}]" for q, g in zip(d["quantity"], d["group"])], fontsize=4.5)
        a.set(xlabel=lab, title=f"{lab} (band: +/- {tol})")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


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

    def plan(self, cond: Condition) -> tuple[Design, MethodSpec]:
        """The cohort design at `cohort.n` (every cohort setting honoured) and the method."""
        if self._plan is None:
            self._plan = matched_plan(cond)
        return self._plan

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        reps = run.replicates.assign(outcome="all", timepoint="all", analysis="matching")
        pairs = mean_rows(reps, {"n_pairs": "mean_n_pairs"}) if "n_pairs" in reps else []
        return tidy([*pairs, failure_rows(run.failures, conds, self.reps())], conds)

    def finish(self, result: ExperimentResult) -> None:
        """result.tables: calibration (with the mean pairs), cohort (one cohort of cohort.n),
        table1, fig1 (on the calibration cohort), table3, table4, table5 (on that cohort); exit
        code 1 if a required calibration target fails."""
        cond = result.conditions[0]
        design, spec = self.plan(cond)
        study, model, seed = study_of(cond.cfg), design.model, int(self.cfg.seed)
        big = generate(dataclasses.replace(design, n=int(self.cfg.experiment.check_n)),
                       np.random.default_rng([seed, 1]))
        pairs = result.replicates.sort_values("rep")["n_pairs"].to_numpy(dtype=float) if len(result.replicates) \
            else np.array([])
        table = pd.concat([calibration_table(study, model, big),
                           pd.DataFrame([matched_pairs_row(pairs, published_pairs(study), design.n)])],
                          ignore_index=True)
        rng = np.random.default_rng([seed, 2])
        small = generate(design, rng)
        _, res = fit_and_match(small.columns, spec, rng)
        label = f"synthetic (n={big.n})"
        result.tables.update(
            calibration=table, cohort=small.to_frame(model), table1=table1(study, big.columns, label=label),
            fig1=outcome_table(study, big.columns, "fig1", label=label), table3=table3(study, small.columns),
            table4=table4(study, model, small.columns, res, spec.balance_denominator),
            table5=table5(study, small.columns, res), published=published_sensitivity(study),
            completers=completers_table(study, model, big))
        result.exit_code = int(len(failed_required(table)) > 0)

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report.montecarlo import atomic_csv, atomic_text

        t, n = result.tables, len(result.tables["cohort"])
        table = t["calibration"]
        atomic_csv(table, out_dir / "calibration.csv")
        atomic_csv(result.summary, out_dir / "summary.csv")
        calibration_figure(table, out_dir / "calibration.png")
        atomic_csv(t["cohort"], out_dir / "cohort.csv")
        atomic_csv(t["published"], out_dir / "published_sensitivity.csv")
        atomic_csv(t["completers"], out_dir / "completers.csv")
        texts = {
            "table1.md": "# Table 1 and Fig. 1: published vs synthetic\n\n" + markdown(t["table1"]) + "\n"
                         + markdown(t["fig1"]),
            "table3.md": f"# Table 3 (multivariable logistic), synthetic cohort n = {n}\n\n" + markdown(t["table3"]),
            "table4.md": f"# Table 4 (after matching), synthetic cohort n = {n}\n\n" + markdown(t["table4"]),
            "table5.md": f"# Table 5 (matched deltas), synthetic cohort n = {n}\n\n" + markdown(t["table5"]),
            "completers.md": "# Who has a change: the baseline of the patients seen at each visit\n\n"
                             "Published: the baseline of all patients (Fig. 1) and of those with a change at the "
                             "visit (Fig. 1 at the visit minus the Table 2 change); synthetic: the same on the "
                             f"calibration cohort (n = {int(self.cfg.experiment.check_n)}), "
                             "with the shares seen and dead at the visit.\n\n" + markdown(t["completers"]),
            "published_sensitivity.md": published_sensitivity_markdown(t["published"]),
        }
        for name, text in texts.items():
            atomic_text(text, out_dir / name)
        failed = failed_required(table)
        pairs = result.replicates["n_pairs"] if len(result.replicates) else pd.Series(dtype=float)
        published = published_pairs(study_of(result.conditions[0].cfg))
        summary = (f"{int(table['required'].sum())} required calibration targets, {len(failed)} failed; "
                   f"mean pairs {pairs.mean():.1f} (paper: {published:g}) over {len(pairs)} cohorts of n = {n}"
                   + (f" ({len(result.failures)} cohorts failed, see summary.csv)" if len(result.failures) else ""))
        report = "\n".join([
            "# reproduce_paper", "", summary, "",
            "![calibration](calibration.png)", "",
            "## Failed required targets", "", markdown(failed) if len(failed) else "none", "",
            "## Reported, not required", "", markdown(table[~table["required"]]), "",
            *texts.values(),
        ])
        atomic_text(report, out_dir / "report.md")
        print(summary)
        if len(failed):
            print("calibration targets failed:\n" + failed[["source", "quantity", "group", "target", "synthetic"]]
                  .to_string(index=False), file=sys.stderr)
            return 1
        return 0
