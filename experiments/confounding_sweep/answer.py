"""The curated answer of confounding_sweep (README.md, "## Answer"), computed from the run's summary
by `python -m sim.report.curate RUN_DIR`."""

from pathlib import Path

import pandas as pd

from sim.report.curate import pick, value_range

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "rejection.png"


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = summary
    crude = pick(s, analysis="crude_diff_means", measure="bias")
    matched = pick(s, analysis="diff_means", measure="bias")
    out, tp = "barthel", "m6"
    c1 = pick(crude, confounding=1.0, outcome=out, timepoint=tp)["value"].iloc[0]
    m1 = pick(matched, confounding=1.0, outcome=out, timepoint=tp)["value"].iloc[0]
    c3 = pick(crude, confounding=3.0, outcome=out, timepoint=tp)["value"].iloc[0]
    m3 = pick(matched, confounding=3.0, outcome=out, timepoint=tp)["value"].iloc[0]
    rej = pick(s, analysis="wilcoxon", measure="rejection", confounding=3.0)
    crej = pick(s, analysis="crude_wilcoxon", measure="rejection", confounding=3.0)
    return (f"Under the null, matching removes most of the confounding bias of the crude comparison of the change "
            f"from baseline: for the Barthel index at 6 months the bias is {c1:.2f} crude vs {m1:.2f} matched at "
            f"the published confounding strength, and {c3:.2f} vs {m3:.2f} at three times that strength. "
            f"What remains comes from Frankel D vs E, which the paper's PS lumps together; at "
            f"strength 3 the matched Wilcoxon test rejects in {value_range(rej)} of replicates against "
            f"{value_range(crej)} for the crude one.")
