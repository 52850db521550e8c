"""Every curated answer says no more than its tables.

For each curated experiment the answer is recomputed from the committed summary.csv.gz (and the
small tables it keeps) while sim.report.phrasing records the comparisons it makes. Then, as a
hostile reviewer would:
- every comparative word in the answer ("at least", "within", "only", "more than", ...) must have
  been produced by a recorded comparison (none typed into the text);
- every recorded comparison is re-derived here from its numbers with the rule written out
  independently (Z = 2 MCSE), so a phrasing function that claims too much fails this file too.
(tests/test_curate.py checks that the recomputed answer is the committed README word for word.)"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from sim.report import curate as C
from sim.report import phrasing as P
from test_curate import CURATED, _fake_run

Z = 2.0


def _rederive(claim: P.Claim) -> bool:
    a, b = claim.a, claim.b
    gap = a.value - b.value
    se = math.sqrt(a.mcse ** 2 + b.mcse ** 2)
    if claim.relation == "gt":
        return gap > Z * se
    if claim.relation == "lt":
        return -gap > Z * se
    if claim.relation == "agrees":
        return abs(gap) <= Z * se
    if claim.relation == "ge":
        return a.value - Z * a.mcse >= b.value
    if claim.relation == "le":
        return a.value + Z * a.mcse <= b.value
    if claim.relation == "within":
        return abs(gap) + Z * a.mcse <= claim.tol
    raise AssertionError(f"unknown relation {claim.relation}")


def _count(text: str, word: str) -> int:
    return len(re.findall(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", text, re.I))


def _unbacked(text: str, claims: list[P.Claim]) -> dict[str, tuple[int, int]]:
    """Comparative words that occur in the text more often than recorded comparisons produced them.
    A longer phrase ("no more than") is counted before the shorter one it contains ("more than")."""
    out = {}
    rest, produced = text, " | ".join(c.words for c in claims)
    for word in sorted(P.COMPARATIVES, key=len, reverse=True):
        n_text, n_made = _count(rest, word), _count(produced, word)
        if n_text > n_made:
            out[word] = (n_text, n_made)
        rest = re.sub(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", " ", rest, flags=re.I)
        produced = re.sub(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", " ", produced, flags=re.I)
    return out


@pytest.mark.parametrize("name", CURATED)
def test_every_comparative_word_is_backed_by_a_claim_that_holds(name, tmp_path):
    module = C.load_answer(name)
    run = _fake_run(name, tmp_path / "run")
    summary = pd.read_csv(run / "summary.csv")
    with P.recording() as claims:
        text = module.answer(summary, run)
    assert not _unbacked(text, claims), f"{name}: comparative words typed, not computed: {_unbacked(text, claims)}"
    wrong = [c for c in claims if not _rederive(c)]
    assert not wrong, f"{name}: claims the numbers do not support: {wrong}"


def test_a_typed_comparative_is_refused():
    """The check itself can fail: a typed 'at least' with no claim behind it is caught, and a claim
    made by the helper is accepted."""
    x = P.Est(0.987, 0.004)
    assert _unbacked("coverage at least 0.99", []) == {"at least": (1, 0)}
    with P.recording() as claims:
        words = P.at_least(x, 0.97)
    assert words == "at least 0.97" and not _unbacked(f"coverage {words}", claims)
    assert all(_rederive(c) for c in claims)


def test_the_helper_refuses_what_the_mcse_does_not_support():
    """0.987 (0.004) is not 'at least 0.99'; 0.52 (0.025) cannot be told from 0.485; a difference of
    3 MCSE is 'more than'."""
    assert P.at_least(P.Est(0.987, 0.004), 0.99) is None
    assert P.at_least(P.Est(0.987, 0.004), 0.98) is None  # the band reaches below 0.98
    assert P.compare(P.Est(0.52, 0.025), P.Est(0.485, 0.025)).startswith("indistinguishable")
    assert P.compare(P.Est(0.60, 0.01), P.Est(0.5, 0.02)) == "more than"
    assert P.within(P.Est(0.053, 0.003), 0.05, 0.005) is None
    assert P.within(P.Est(0.051, 0.001), 0.05, 0.005) is not None
    # a weakened rule (no MCSE) would have said all of these: the re-derivation refuses them
    for c in (P.Claim("at least 0.99", "ge", P.Est(0.995, 0.004), P.Est(0.99)),
              P.Claim("more than", "gt", P.Est(0.52, 0.025), P.Est(0.485, 0.025)),
              P.Claim("within 0.005 of 0.05", "within", P.Est(0.053, 0.003), P.Est(0.05), 0.005)):
        assert not _rederive(c)


def test_fmt_shows_the_digits_the_mcse_warrants():
    assert P.fmt(P.Est(0.8312, 0.0213)) == "0.83 (0.02)"
    assert P.fmt(P.Est(0.0226, 0.0074)) == "0.023 (0.007)"
    assert P.fmt(P.Est(7.4712, 0.3)) == "7.47 (0.30)"  # two decimals at least below 10
    assert P.fmt(P.Est(1234.4, 12.0)) == "1234 (12)"
    assert P.fmt(P.Est(-0.00004, 0.00063)) == "-0.00004 (0.00063)"  # not -0.0000
    assert P.fmt(P.Est(0.5, 0.0)) == "0.5" and P.fmt(P.Est(5000.0, 0.0)) == "5000"  # known exactly
