"""published_compatibility's tables and figures: the design-based compatibility intervals per
outcome, visit and hidden confounder U (compatibility.csv), the probabilistic bias analysis
(bias_adjusted.csv, with the linear surrogate it rests on in surrogate.csv), the compatibility map
and the bias-adjusted distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from sim.engine.seeds import replicate_rng  # noqa: E402
from sim.methods.sensitivity import compatibility as M  # noqa: E402
from sim.report.montecarlo import atomic_csv, atomic_text, run_lines, write_tables  # noqa: E402
from sim.report.settings import NO_FIGURES, arm_words, draws_figures  # noqa: E402
from sim.report.tables import markdown  # noqa: E402

if TYPE_CHECKING:
    from sim.jobs.contract import ExperimentResult

THETA, U_OR, U_EFFECT = "effect_mcid", "treatment_log_or", "outcome_effect"
BOOT = 200  #: resamples of the replicates behind each endpoint's MCSE
#: streams of the report's own draws (bootstrap, prior draws), apart from every replicate's
BOOT_STREAM, PRIOR_STREAM, RANK_STREAM = 0xB007, 0x9B1A, 0x4A2C


def _u_cells(grid: pd.DataFrame) -> list[tuple[float, float]]:
    lor = sorted(grid[U_OR].unique()) if U_OR in grid else [0.0]
    eff = sorted(grid[U_EFFECT].unique(), reverse=True) if U_EFFECT in grid else [0.0]
    return [(a, b) for a in lor for b in eff]


def _u_label(lor: float, eff: float) -> str:
    return "no U" if lor == 0 and eff == 0 else f"OR {math.exp(lor):.3g}, {eff:g} SD"


def gather(result: "ExperimentResult", reps: int, analysis: str = "diff_means"
           ) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (U odds ratio, U effect, outcome, visit): the θ simulated (increasing; θs clipped to the
    same value by the scale's bounds kept once), the analysis' estimates (len(θ), reps; for the rank
    test its signed score) and the matched truths, replicate r in column r at every θ (NaN where it
    failed)."""
    est: dict[tuple, dict[float, tuple[pd.Series, pd.Series]]] = {}
    for rows in result.condition_replicates():
        d = rows[rows["analysis"] == analysis]
        if d.empty:
            continue
        r0 = d.iloc[0]
        cell = (float(r0.get(U_OR, 0.0)), float(r0.get(U_EFFECT, 0.0)))
        for (o, t), g in d.groupby(["outcome", "timepoint"], sort=False):
            theta = round(float(g["theta_mcid"].iloc[0]), 12)
            by = est.setdefault((*cell, o, t), {})
            if theta not in by:
                g = g.set_index("rep")
                by[theta] = (g["estimate"], g["truth_matched"])
    out = {}
    for key, by in est.items():
        thetas = np.array(sorted(by), float)
        arrays = []
        for j in (0, 1):
            a = np.full((thetas.size, int(reps)), np.nan)
            for k, th in enumerate(thetas):
                s = by[float(th)][j]
                a[k, s.index.to_numpy()] = s.to_numpy(float)
            arrays.append(a)
        out[key] = (thetas, *arrays)
    return out


def analyse_grid(result: "ExperimentResult", pub: pd.DataFrame, *, reps: int, alpha: float, seed: int,
                 priors: dict, n_draws: int, rank_test: str, treated: str = "treatment") -> dict[str, pd.DataFrame]:
    """compatibility, surrogate and bias_adjusted tables from the run's replicates, for the published
    estimates `pub` (sim.jobs.compatibility.analysed_published) and the job's settings."""
    cells = gather(result, reps)
    ranked = gather(result, reps, rank_test)
    grid_max = float(result.grid[THETA].max())
    rows, surrogates = [], []
    for r in pub.itertuples():
        for lor, eff in _u_cells(result.grid):
            key = (lor, eff, r.outcome, r.timepoint)
            if key not in cells:
                continue
            thetas, draws, truths = cells[key]
            iv = M.compatibility_interval(thetas, draws, r.published_diff, alpha,
                                          rng=replicate_rng(seed, BOOT_STREAM, len(rows)), boot=BOOT)
            truth = np.nanmean(truths, axis=1) / r.mcid  # realised matched effect per θ, MCID units
            realised = [float(np.interp(v, thetas, truth)) if np.isfinite(v) else math.nan for v in (iv.low, iv.high)]
            rows.append({"outcome": r.outcome, "timepoint": r.timepoint, U_OR: lor, "odds_ratio": math.exp(lor),
                         U_EFFECT: eff, "u": _u_label(lor, eff),
                         "low_mcid": iv.low, "low_mcid_mcse": iv.low_mcse, "open_low": iv.open_low,
                         "high_mcid": iv.high, "high_mcid_mcse": iv.high_mcse, "open_high": iv.open_high,
                         "low": iv.low * r.mcid, "high": iv.high * r.mcid,
                         "low_mcse": iv.low_mcse * r.mcid, "high_mcse": iv.high_mcse * r.mcid,
                         "realised_low_mcid": realised[0], "realised_high_mcid": realised[1],
                         "published_diff": r.published_diff, "published_p": r.p, "published_z": r.published_z,
                         "naive_low": r.naive_low, "naive_high": r.naive_high,
                         "naive_low_mcid": r.naive_low_mcid, "naive_high_mcid": r.naive_high_mcid,
                         "mcid": r.mcid, "n_treated": r.n_treated, "n_control": r.n_control,
                         "theta_min": thetas[0], "theta_max": thetas[-1],
                         "theta_max_is_scale_bound": bool(thetas[-1] < grid_max - 1e-9), "reps": draws.shape[1]})
            rows[-1].update(_rank_interval(ranked.get(key), r.published_z, alpha, seed, len(rows)))
            s = M.fit_surrogate(thetas, draws, near=r.published_diff)
            surrogates.append({"outcome": r.outcome, "timepoint": r.timepoint, U_OR: lor, U_EFFECT: eff,
                               "a": s.a, "b": s.b, "sd": s.sd, "misfit_mcse": s.misfit})
    tables = {"compatibility": pd.DataFrame(rows), "surrogate": pd.DataFrame(surrogates)}
    if priors and len(surrogates):
        tables["bias_adjusted"] = bias_analysis(tables["surrogate"], pub, priors, n_draws, seed, tables["compatibility"],
                                                treated)
    return tables


def prior_text(priors: dict, treated: str = "treatment") -> str:
    """'odds ratio of U on decompression: uniform(1, 3); effect of U on the change (SD): ...', on the
    scale a reader knows (the odds ratio, not its log, for a uniform or triangular prior);
    `treated`: the study's word for the treated arm."""
    out = []
    for k, p in priors.items():
        args = [v for name, v in p.items() if name != "dist"]
        if k == U_OR and p["dist"] in ("uniform", "triangular"):
            out.append(f"odds ratio of U on {treated} {p['dist']}({', '.join(f'{math.exp(v):.3g}' for v in args)})")
        else:
            label = f"log odds ratio of U on {treated}" if k == U_OR else "effect of U on the change (SD)"
            out.append(f"{label} {p['dist']}({', '.join(f'{v:.3g}' for v in args)})")
    return "; ".join(out)


def _rank_interval(cell, published_z: float, alpha: float, seed: int, k: int) -> dict:
    """The same inversion through the paper's own test: its published p-value, signed by the
    published difference, against the simulated signed scores of the rank-sum test (NaN without a
    published p or without the test in the run)."""
    keys = ("rank_low_mcid", "rank_low_mcid_mcse", "rank_open_low", "rank_high_mcid", "rank_high_mcid_mcse",
            "rank_open_high")
    if cell is None or not np.isfinite(published_z):
        return dict.fromkeys(keys, math.nan)
    thetas, draws, _ = cell
    iv = M.compatibility_interval(thetas, draws, published_z, alpha, rng=replicate_rng(seed, RANK_STREAM, k), boot=BOOT)
    return dict(zip(keys, (iv.low, iv.low_mcse, iv.open_low, iv.high, iv.high_mcse, iv.open_high)))


def bias_analysis(sur: pd.DataFrame, pub: pd.DataFrame, priors: dict, n: int, seed: int,
                  compat: pd.DataFrame, treated: str = "treatment") -> pd.DataFrame:
    """Per outcome and visit: θ drawn through the surrogate for U drawn from its priors (a
    parameter without a prior stays at 0), its median and 2.5/97.5 percentiles with and without
    the random error; U outside its simulated grid is clipped to it, and θ to the range simulated
    (beyond it the bounded scale allows no effect, or the surrogate has no data): the shares of
    draws clipped are reported."""
    out = []
    for k, r in enumerate(pub.itertuples()):
        s = sur[(sur["outcome"] == r.outcome) & (sur["timepoint"] == r.timepoint)]
        gx, gy = np.sort(s[U_OR].unique()), np.sort(s[U_EFFECT].unique())
        rng = replicate_rng(seed, PRIOR_STREAM, k)
        x = M.draw_prior(priors[U_OR], n, rng) if U_OR in priors else np.zeros(n)
        y = M.draw_prior(priors[U_EFFECT], n, rng) if U_EFFECT in priors else np.zeros(n)
        table = s.set_index([U_OR, U_EFFECT])
        vals = {c: np.array([[table.loc[(a, b), c] for b in gy] for a in gx]) for c in ("a", "b", "sd")}
        if gx.size < 2 or gy.size < 2:  # no U grid to interpolate over: the single cell
            a, b, sd = (np.full(n, v[0, 0]) for v in vals.values())
            outside = (x != gx[0]) | (y != gy[0])
        else:
            (a, outside), (b, _), (sd, _) = (M.interpolate(gx, gy, vals[c], x, y) for c in ("a", "b", "sd"))
        systematic, total = M.bias_adjusted(r.published_diff, a, b, sd, rng)
        c = compat[(compat["outcome"] == r.outcome) & (compat["timepoint"] == r.timepoint)]
        lo, hi = float(c["theta_min"].min()), float(c["theta_max"].max())
        clipped = {name: float(np.mean((v < lo) | (v > hi))) for name, v in (("systematic", systematic), ("total", total))}
        systematic, total = np.clip(systematic, lo, hi), np.clip(total, lo, hi)
        row = {"outcome": r.outcome, "timepoint": r.timepoint, "priors": prior_text(priors, treated), "draws": n,
               "share_outside_grid": float(outside.mean()), "theta_min": lo, "theta_max": hi,
               "share_theta_clipped": clipped["total"], "share_theta_clipped_systematic": clipped["systematic"],
               "surrogate_misfit_mcse": float(s["misfit_mcse"].max()), "naive_mcid": r.published_diff_mcid,
               "naive_low_mcid": r.naive_low_mcid, "naive_high_mcid": r.naive_high_mcid, "mcid": r.mcid}
        for name, v in (("systematic", systematic), ("total", total)):  # θ: MCID units already
            q = np.percentile(v, [2.5, 50, 97.5])
            row.update({f"{name}_q025_mcid": q[0], f"{name}_median_mcid": q[1], f"{name}_q975_mcid": q[2]})
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- figures

def map_figure(summary: pd.DataFrame, compat: pd.DataFrame, path: Path, alpha: float) -> Path | None:
    """Per outcome and visit: the Monte Carlo p-value of the published estimate in every cell
    (θ across, U down), its α contour, the naive interval and the design-based one of each U."""
    p = summary[summary["measure"] == "p_published"]
    if p.empty:
        return None
    outcomes, times = list(dict.fromkeys(p["outcome"])), list(dict.fromkeys(p["timepoint"]))
    cells = [c for c in _u_cells(p) if c == (0.0, 0.0) or (c[0] > 0 and c[1] < 0)]  # no U, then masking U
    thetas = np.sort(p[THETA].unique())
    fig, axes = plt.subplots(len(outcomes), len(times), figsize=(5.2 * len(times), 0.3 * (len(cells) + 2) * len(outcomes) + 1.2),
                             squeeze=False, sharex=True)
    mesh = None
    for i, o in enumerate(outcomes):
        for j, t in enumerate(times):
            ax = axes[i, j]
            d = p[(p["outcome"] == o) & (p["timepoint"] == t)]
            get = d.set_index([d.get(U_OR, pd.Series(0.0, index=d.index)),
                               d.get(U_EFFECT, pd.Series(0.0, index=d.index)), THETA])["value"]
            z = np.array([[get.get((a, b, th), np.nan) for th in thetas] for a, b in cells])
            sim_theta = summary[(summary["measure"] == "theta_mcid") & (summary["outcome"] == o)
                                & (summary["timepoint"] == t)].groupby(THETA)["value"].first()
            z[:, [sim_theta.get(th, th) < th - 1e-9 for th in thetas]] = np.nan  # beyond the scale's bound
            mesh = ax.pcolormesh(thetas, np.arange(len(cells)), z, vmin=0, vmax=1, cmap="viridis", shading="nearest")
            if np.nanmax(z) > alpha and len(cells) > 1:
                ax.contour(thetas, np.arange(len(cells)), z, levels=[alpha], colors="white", linewidths=1.2)
            c = compat[(compat["outcome"] == o) & (compat["timepoint"] == t)]
            for k, (a, b) in enumerate(cells):
                r = c[np.isclose(c[U_OR], a) & np.isclose(c[U_EFFECT], b)]
                if len(r):
                    r = r.iloc[0]
                    lo = r.theta_min if r.open_low else r.low_mcid
                    hi = r.theta_max if r.open_high else r.high_mcid
                    ax.plot([lo, hi], [k, k], color="black", lw=1.0)
                    for end, is_open, mark in ((lo, r.open_low, "<"), (hi, r.open_high, ">")):
                        if is_open:  # compatible up to the end of what was simulated
                            ax.plot(end, k, mark, color="black", ms=4)
            r0 = c.iloc[0] if len(c) else None
            if r0 is not None:
                ax.plot([r0.naive_low_mcid, r0.naive_high_mcid], [-0.9, -0.9], color="red", lw=3)
            ax.set_ylim(len(cells) - 0.5, -1.4)
            ax.set_yticks([-0.9, *range(len(cells))], ["naive t", *[_u_label(a, b) for a, b in cells]], fontsize=6)
            ax.axvline(0, color="grey", lw=0.6, ls=":")
            ax.set_title(f"{o}, {t}", fontsize=8)
            if i == len(outcomes) - 1:
                ax.set_xlabel("true effect θ (MCID units)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle("Monte Carlo p-value of the published estimate under each true effect θ and hidden confounder U "
                 f"(colour; white contour p = {alpha:g}).\nBlack lines: design-based {100 * (1 - alpha):g} % "
                 "compatibility interval for θ under each U; red: the naive t-interval from the published "
                 "numbers;\nan arrow: open end (compatible up to the grid's or the bounded scale's limit); blank: beyond "
                 "the largest effect the bounded scale allows", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.92, 0.965))
    cax = fig.add_axes((0.935, 0.2, 0.012, 0.6))
    fig.colorbar(mesh, cax=cax).set_label("p-value", fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def adjusted_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Bias-adjusted θ (median and 95 % interval, with and without random error) beside the naive
    estimate and interval, per outcome and visit."""
    if table is None or table.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(table) + 1.9))
    labels = []
    for k, r in enumerate(table.itertuples()):
        y = len(table) - 1 - k
        ax.plot([r.naive_low_mcid, r.naive_high_mcid], [y + 0.22] * 2, color="red", lw=2)
        ax.plot(r.naive_mcid, y + 0.22, "o", color="red", ms=4)
        ax.plot([r.total_q025_mcid, r.total_q975_mcid], [y] * 2, color="black", lw=2)
        ax.plot([r.systematic_q025_mcid, r.systematic_q975_mcid], [y - 0.22] * 2, color="grey", lw=2)
        ax.plot(r.total_median_mcid, y, "s", color="black", ms=4)
        labels.append(f"{r.outcome} {r.timepoint}")
    ax.set_yticks(range(len(table))[::-1], labels, fontsize=7)
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    ax.axvline(1, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("true effect θ (MCID units; dashed: one MCID)", fontsize=8)
    ax.set_title("Bias-adjusted true effect θ over the priors on the hidden confounder U\n(median and 2.5-97.5 % "
                 "of the draws; θ held to the range simulated)", fontsize=8)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color="red", lw=2, marker="o", ms=4, label="naive estimate, t-interval"),
                       Line2D([], [], color="black", lw=2, marker="s", ms=4, label="bias-adjusted, with random error"),
                       Line2D([], [], color="grey", lw=2, label="bias-adjusted, systematic error only")],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- files

def write_compatibility_outputs(cfg: DictConfig, result: "ExperimentResult", out_dir: Path) -> None:
    write_tables(result, out_dir, replicates=False)
    alpha = float(cfg.experiment.get("alpha", 0.05))
    names = {"compatibility": "compatibility.csv", "surrogate": "surrogate.csv", "bias_adjusted": "bias_adjusted.csv"}
    for key, file in names.items():
        if key in result.tables:
            atomic_csv(result.tables[key], out_dir / file)
    compat = result.tables.get("compatibility", pd.DataFrame())
    atomic_csv(key_table(compat), out_dir / "key_table.csv")
    figures = [f for f in (map_figure(result.summary, compat, out_dir / "compatibility_map.png", alpha),
                           adjusted_figure(result.tables.get("bias_adjusted"), out_dir / "bias_adjusted.png")) if f] \
        if draws_figures(cfg) else []
    atomic_text(_report(cfg, result, figures), out_dir / "report.md")


#: the hidden confounders the key table shows (those in the grid): none, a moderate and the strongest masking one
KEY_CELLS = ((0.0, 0.0), (0.6931471806, -0.5), (1.0986122887, -1.0))


def _cell(v: float, se: float, is_open: bool, limit: float) -> str:
    return f">= {limit:.2f} (open)" if is_open else f"{v:.2f} ({se:.2f})"


def _rank_cell(r) -> str:
    """The interval through the rank test, as the key table shows the others ('' if not run)."""
    if not (r.rank_open_low is True or np.isfinite(r.rank_low_mcid)):
        return ""
    low = f"<= {r.theta_min:.2f}" if r.rank_open_low is True else f"{r.rank_low_mcid:.2f} ({r.rank_low_mcid_mcse:.2f})"
    high = f">= {r.theta_max:.2f}" if r.rank_open_high is True else f"{r.rank_high_mcid:.2f} ({r.rank_high_mcid_mcse:.2f})"
    return f"{low} to {high}"


def key_table(compat: pd.DataFrame) -> pd.DataFrame:
    """Per outcome, visit and key hidden confounder: the design-based interval's ends in MCID units
    with their MCSE (an open end as '>= limit (open)') beside the naive t-interval."""
    rows = []
    if compat.empty:
        return pd.DataFrame()
    for r in compat.itertuples():
        if not any(np.isclose(r.treatment_log_or, a) and np.isclose(r.outcome_effect, b) for a, b in KEY_CELLS):
            continue
        rows.append({"outcome": r.outcome, "timepoint": r.timepoint, "hidden confounder": r.u,
                     "low (MCID)": _cell(r.low_mcid, r.low_mcid_mcse, r.open_low, r.theta_min).replace(">=", "<="),
                     "high (MCID)": _cell(r.high_mcid, r.high_mcid_mcse, r.open_high, r.theta_max),
                     "through the rank test (MCID)": _rank_cell(r),
                     "naive t-interval (MCID)": f"{r.naive_low_mcid:.2f} to {r.naive_high_mcid:.2f}",
                     "published difference": f"{r.published_diff:.3g}", "MCID": f"{r.mcid:g}",
                     "n analysed": f"{r.n_treated:g} / {r.n_control:g}"})
    return pd.DataFrame(rows)


def _report(cfg: DictConfig, result: "ExperimentResult", figures: list[Path]) -> str:
    compat = result.tables.get("compatibility", pd.DataFrame())
    cols = [c for c in ("outcome", "timepoint", "u", "low_mcid", "low_mcid_mcse", "high_mcid", "high_mcid_mcse",
                        "rank_low_mcid", "rank_high_mcid", "naive_low_mcid", "naive_high_mcid", "n_treated",
                        "n_control") if c in compat]
    lines = [f"# {cfg.experiment.name}", "", str(cfg.experiment.get("description", "")).strip(), "",
             "## What was run", "", *run_lines(cfg, result), "",
             "θ = the true effect on the change in MCID units "
             f"(among the reference patients alive without {arm_words(cfg)['treated']}, as every experiment defines it); each end "
             "of an interval is interpolated between grid points, with its Monte Carlo SE from "
             f"{BOOT} resamples of the replicates; an end outside the θ grid is reported open (NaN, open_* true).", "",
             "## Compatibility intervals (MCID units)", "", markdown(compat[cols]) if len(compat) else "(none)", ""]
    if "bias_adjusted" in result.tables:
        lines += ["## Probabilistic bias analysis (MCID units)", "",
                  "Priors: " + str(OmegaConf.to_container(cfg.experiment.bias_analysis.priors, resolve=True)), "",
                  markdown(result.tables["bias_adjusted"]), ""]
    images = [f"![{f.name}]({f.name})" for f in figures] if draws_figures(cfg) else [NO_FIGURES]
    lines += images + ["", "## Configuration", "", "```yaml", OmegaConf.to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)
