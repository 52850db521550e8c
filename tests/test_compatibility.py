"""published_compatibility checked against the known truth of the synthetic cohorts before any of
its intervals is reported: 'published results' drawn from the paper's design at a known true effect
θ (independent replicates: another seed) are inverted with the design's simulated distributions,
and the design-based interval must cover θ in 0.95 - 3 MCSE of them or more. The naive interval
(the published difference ± t x its SE, read in MCID units) is the weakened implementation: in the
confounded design it fails the same check. Bad settings are refused before any replicate runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import sim
from sim.jobs.config import ConfigError
from sim.methods.sensitivity import compatibility as M
from sim.report.compatibility import gather

OUTCOME, VISIT, MCID = "face", "m6", 2.0
THETAS = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
#: the design's replicates (their quantiles' error widens the miss rate a little) and the held-out
#: 'published results' per θ (MCSE of a coverage near 0.95: 0.009)
DESIGN_REPS, PUBLISHED = 1000, 600
#: one outcome and visit keep the runs small; the published numbers are the study's own
SMALL = ["n_jobs=1", f"method.outcomes.names=[{OUTCOME}]", f"method.outcomes.times=[{VISIT}]",
         "experiment.bias_analysis.priors=null"]


def _grid(thetas, lor, effect) -> str:
    return (f"experiment.grid={{cohort.effect_mcid:[{','.join(map(str, thetas))}],"
            f"cohort.unmeasured.treatment_log_or:[{lor}],cohort.unmeasured.outcome_effect:[{effect}]}}")


def _published(reps, seed, theta, lor, effect, analysis="diff_means") -> pd.DataFrame:
    """Held-out replicates at θ (another seed: independent of the design's)."""
    res = sim.run("published_compatibility", [*SMALL, f"reps={reps}", f"seed={seed}",
                                               _grid(sorted({-1.0, theta, 1.5}), lor, effect)])
    r = res.replicates
    return r[np.isclose(r["effect_mcid"], theta) & (r["analysis"] == analysis)]


@pytest.fixture(scope="module", params=[(0.0, 0.0), (1.0986122887, -1.0)], ids=["no U", "U OR 3, -1 SD"])
def design(request):
    lor, effect = request.param
    res = sim.run("published_compatibility", [*SMALL, f"reps={DESIGN_REPS}", "seed=11", _grid(THETAS, lor, effect)])
    thetas, draws, _ = gather(res, DESIGN_REPS)[(lor, effect, OUTCOME, VISIT)]
    _, ranked, _ = gather(res, DESIGN_REPS, "wilcoxon")[(lor, effect, OUTCOME, VISIT)]
    return lor, effect, thetas, M.quantile_curves(draws), M.quantile_curves(ranked)


def _coverage(curves, thetas, published: pd.DataFrame, theta: float, naive: bool) -> tuple[float, float]:
    hits = []
    for d, se in zip(published["estimate"], published["se"]):
        if naive:
            low, high = (d - 1.96 * se) / MCID, (d + 1.96 * se) / MCID
        else:
            low, high, _, _ = M.invert(thetas, *curves, d)
        hits.append((math.isnan(low) or low <= theta) and (math.isnan(high) or theta <= high))
    return float(np.mean(hits)), math.sqrt(0.95 * 0.05 / len(hits))


@pytest.mark.slow
@pytest.mark.parametrize("theta", [0.0, 0.5, 1.0])
def test_the_design_based_interval_covers_the_true_effect(design, theta):
    lor, effect, thetas, curves, _ = design
    published = _published(PUBLISHED, 77, theta, lor, effect)
    assert len(published) >= 0.97 * PUBLISHED
    cover, mcse = _coverage(curves, thetas, published, theta, naive=False)
    assert cover >= 0.95 - 3 * mcse, (cover, mcse)


@pytest.mark.slow
def test_the_interval_through_the_rank_test_covers_the_true_effect(design):
    """The same inversion through the paper's own test: a published Wilcoxon p-value signed by
    the direction it favours, against the simulated signed scores."""
    lor, effect, thetas, _, ranked = design
    published = _published(PUBLISHED, 78, 0.5, lor, effect, analysis="wilcoxon")
    cover, mcse = _coverage(ranked, thetas, published, 0.5, naive=False)
    assert cover >= 0.95 - 3 * mcse, (cover, mcse)


@pytest.mark.slow
def test_the_naive_interval_fails_where_the_design_is_confounded(design):
    """With U (odds ratio 3 on decompression, -1 SD on the change) the matched difference is biased
    down: the naive interval misses the truth far more than 5 % of the time; without U it is close
    to nominal (the check is sharp, not a weak threshold)."""
    lor, effect, thetas, curves, _ = design
    published = _published(PUBLISHED, 77, 1.0, lor, effect)
    naive, mcse = _coverage(curves, thetas, published, 1.0, naive=True)
    if lor == 0.0:
        assert naive >= 0.95 - 4 * mcse
    else:
        assert naive < 0.95 - 3 * mcse, naive


def test_signed_z_is_the_two_sided_p_with_its_direction():
    from scipy.stats import norm

    from sim.jobs.compatibility import signed_z

    z = signed_z([0.05, 0.05, 1.0, 0.92], [1, -1, 1, -1])
    assert z[:2] == pytest.approx([norm.isf(0.025), -norm.isf(0.025)]) and z[2] == 0.0 and z[3] < 0


def test_published_estimates_from_the_study_use_the_numbers_analysed():
    from sim.jobs.compatibility import naive_columns, published_estimates

    pub = naive_columns(published_estimates(sim.compose("published_compatibility")), 0.05).set_index(["outcome", "timepoint"])
    r = pub.loc[("barthel", "m6")]
    assert (r.mean_treated, r.sd_treated, r.mean_control, r.sd_control) == (17.6, 28.8, 15.6, 28.7)  # Table 5
    assert (r.n_treated, r.n_control) == (33, 30)  # 51 minus the matched deaths (Table 4), study `analysed`
    assert r.published_diff == pytest.approx(2.0) and r.naive_high_mcid == pytest.approx(r.naive_high / 9.25)
    assert r.p == 0.92 and 0 < r.published_z < 0.2  # Table 5's Wilcoxon p, signed by the difference


@pytest.mark.parametrize("override, needle", [
    ("experiment.published={nosuch:{m6:{treated:[1,1,30],control:[0,1,30]}}}",
     "experiment.published.nosuch: unknown outcome; allowed:"),
    ("experiment.published={face:{m3:{treated:[1,1,30],control:[0,1,30]}}}", "experiment.published.face.m3: unknown visit"),
    ("experiment.published={face:{m6:{treated:[1,-1,30],control:[0,1,30]}}}",
     "experiment.published.face.m6.treated: must be [mean, sd, n] with sd > 0"),
    ("experiment.published={face:{m6:{treated:[1,1,30],control:[0,1,30],p:2}}}",
     "experiment.published.face.m6.p: the published two-sided p-value of the rank test"),
    ("experiment.bias_analysis.priors.treatment_log_or=[beta,1,1]",
     "experiment.bias_analysis.priors.treatment_log_or.dist: got 'beta'; allowed"),
    ("experiment.bias_analysis.priors.outcome_effect=[normal,0]",
     "experiment.bias_analysis.priors.outcome_effect: a normal prior is [normal, mean, sd]"),
    ("++experiment.bias_analysis.priors.gamma=[uniform,0,1]",
     "experiment.bias_analysis.priors.gamma: unknown bias parameter"),
    ("experiment.grid={cohort.effect_mcid:[-0.5,0.0,0.5]}", "experiment.grid.cohort.effect_mcid: the grid [-0.5, 0.5]"),
    ("method.outcomes.analyses=[wilcoxon]", "method.outcomes.analyses: must include 'diff_means'"),
])
def test_bad_settings_are_one_error_naming_the_key_before_any_replicate(override, needle):
    with pytest.raises(ConfigError) as e:
        sim.run("published_compatibility", ["reps=2", override])
    assert str(e.value).startswith(needle), str(e.value)


def test_the_python_api_takes_published_numbers_and_reports_open_ends():
    """A user's own published result; a large benefit, far beyond what the θ grid reaches: the
    upper end is reported open (NaN, flagged), never clipped to the grid."""
    res = sim.compatibility({"face": {"m6": {"treated": [2.6, 2.0, 30], "control": [0.5, 2.0, 30]}}},
                            ["n_jobs=1", "reps=60", "method.outcomes.names=[face]", "method.outcomes.times=[m6]",
                             "experiment.bias_analysis.priors=null",
                             "experiment.grid={cohort.effect_mcid:[-1.0,0.0,1.0,2.0],"
                             "cohort.unmeasured.treatment_log_or:[0.0],cohort.unmeasured.outcome_effect:[0.0]}"])
    c = res.tables["compatibility"]
    assert len(c) == 1
    r = c.iloc[0]
    assert r.published_diff == pytest.approx(2.1) and r.open_high and math.isnan(r.high_mcid)
    assert np.isfinite(r.low_mcid) and r.low_mcid < 1.05 + 1e-9
