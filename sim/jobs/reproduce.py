"""`experiment=reproduce_paper`: does the synthetic cohort look like the real one?

Writes, in the run directory:
  calibration.csv   every published marginal beside its value in a large synthetic cohort, with the
                    acceptance rule (exit code 1 if a required target fails);
  cohort.csv        one synthetic cohort of the paper's size (potential outcomes included);
  table1.md         Table 1 and Fig. 1, published beside synthetic;
  table3.md, table4.md, table5.md
                    the paper's analysis re-run on the paper-size cohort: multivariable logistic
                    model, matched marginals with SMDs, matched delta comparisons;
  calibration.png   synthetic vs published for every marginal;
  report.md         all of the above in one page.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from sim.cohort.calibrate import calibrated  # noqa: E402
from sim.cohort.checks import calibration_table, failed_required, matched_pairs_row  # noqa: E402
from sim.cohort.generate import Cohort, generate, make_design  # noqa: E402
from sim.cohort.model import CohortModel, numeric_column  # noqa: E402
from sim.engine import replicate_rng  # noqa: E402
from sim.jobs.outputs import atomic_csv, atomic_text  # noqa: E402
from sim.methods.balance import smd  # noqa: E402
from sim.methods.matching import MatchResult, match  # noqa: E402
from sim.methods.outcomes import wilcoxon_ranksum  # noqa: E402
from sim.methods.pipeline import MethodSpec, _matrix  # noqa: E402
from sim.methods.propensity import fit_propensity, odds_ratio_table  # noqa: E402
from sim.report.tables import mean_sd_cell, markdown, outcome_table, table1  # noqa: E402
from sim.study import Study, load_study  # noqa: E402


def paper_match(columns: Mapping[str, np.ndarray], spec: MethodSpec, rng: np.random.Generator):
    treated = np.asarray(columns["treated"]).astype(bool)
    fit = fit_propensity(_matrix(columns, spec.ps_covariates), treated.astype(np.int8))
    res = match(fit.ps, treated, algorithm=spec.algorithm, caliper=spec.caliper, caliper_scale=spec.caliper_scale,
                caliper_sd=spec.caliper_sd, order=spec.order, ratio=spec.ratio, replace=spec.replace,
                rng=rng if spec.order == "random" else None)
    return fit, res


def mean_pairs(model: CohortModel, cohort_cfg: Mapping[str, Any], spec: MethodSpec, n_cohorts: int,
               seed: int) -> np.ndarray:
    design = make_design(model, cohort_cfg["n"], cohort_cfg["confounding"])
    pairs = np.empty(n_cohorts)
    for r in range(n_cohorts):
        rng = replicate_rng(seed, 0, r)
        pairs[r] = paper_match(generate(design, rng).columns, spec, rng)[1].n_pairs
    return pairs


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
        for t in ("m1", "m6"):
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


def main(cfg: DictConfig, out_dir: Path) -> int:
    c = OmegaConf.to_container(cfg, resolve=True)  # validated by sim.app.run
    exp = c["experiment"]
    study = load_study(c["study"])
    model = calibrated(study, c["cohort"])
    spec = MethodSpec.from_config(c["method"])
    seed = int(c["seed"])

    big = generate(make_design(model, int(exp["check_n"]), 1.0), np.random.default_rng([seed, 1]))
    table = calibration_table(study, model, big)
    pairs = mean_pairs(model, {**c["cohort"], "n": study.n["total"], "confounding": 1.0}, spec,
                       int(exp["pair_cohorts"]), seed)
    table = pd.concat([table, pd.DataFrame([matched_pairs_row(pairs, study.raw["propensity_model"]["matching"]["pairs"],
                                                              study.n["total"])])], ignore_index=True)
    atomic_csv(table, out_dir / "calibration.csv")
    calibration_figure(table, out_dir / "calibration.png")

    rng = np.random.default_rng([seed, 2])
    small: Cohort = generate(make_design(model, study.n["total"], 1.0), rng)
    atomic_csv(small.to_frame(model), out_dir / "cohort.csv")
    _, res = paper_match(small.columns, spec, rng)
    t1 = table1(study, big.columns, label=f"synthetic (n={big.n})")
    f1 = outcome_table(study, big.columns, "fig1", label=f"synthetic (n={big.n})")
    t3, t4, t5 = table3(study, small.columns), table4(study, model, small.columns, res, spec.balance_denominator), \
        table5(study, small.columns, res)
    texts = {
        "table1.md": "# Table 1 and Fig. 1: published vs synthetic\n\n" + markdown(t1) + "\n" + markdown(f1),
        "table3.md": f"# Table 3 (multivariable logistic), synthetic cohort n = {small.n}\n\n" + markdown(t3),
        "table4.md": f"# Table 4 (after matching), synthetic cohort n = {small.n}\n\n" + markdown(t4),
        "table5.md": f"# Table 5 (matched deltas), synthetic cohort n = {small.n}\n\n" + markdown(t5),
    }
    for name, text in texts.items():
        atomic_text(text, out_dir / name)
    failed = failed_required(table)
    summary = (f"{int(table['required'].sum())} required calibration targets, {len(failed)} failed; "
               f"mean pairs {pairs.mean():.1f} (paper: 51) over {len(pairs)} cohorts of n = {study.n['total']}")
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
