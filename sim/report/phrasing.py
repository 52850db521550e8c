"""MCSE-aware phrasing for curated answers: a comparative word ("at least", "within", "only",
"more than", "agrees" ...) is produced here, by code, and only when the numbers support it beyond
their Monte Carlo error.

Why: a curated answer is a conclusion a reader will cite. "Coverage at least 0.99" written beside a
value of 0.987 (0.004), or "only 0.25" where nothing was compared, is what a reviewer re-derives and
rejects. So every answer.py quotes estimates as `Est` (value and MCSE) and asks this module for each
comparison; each comparison that yields a comparative word is recorded as a `Claim`, and
tests/test_curated_claims.py re-checks every claim of every curated answer against the curated
summary and refuses any comparative word in an answer that no claim produced.

Rules (Z = 2 MCSE):
  more/less than     a - b beyond Z x sqrt(mcse_a² + mcse_b²) (independent estimates: conservative
                     under common random numbers, whose differences are more precise)
  at least / at most the value's Z-MCSE band lies on the stated side of the bound
  within tol of t    |value - t| + Z x mcse <= tol
  agrees with t      |value - t| <= Z x mcse: the data cannot tell them apart (not a proof of equality)
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pandas as pd

Z = 2.0  #: how many MCSEs a difference or a bound must clear before a comparative word is used

#: the comparative words an answer may contain only as produced by this module (lower case)
COMPARATIVES = ("at least", "at most", "within", "only", "more than", "less than", "fewer than",
                "agrees", "agree", "exceeds", "exceed", "indistinguishable", "as large as", "larger than",
                "smaller than", "higher than", "lower than", "no more than", "no less than")


@dataclass(frozen=True)
class Est:
    """An estimate from a run's summary with its Monte Carlo SE (0 for a number known exactly)."""

    value: float
    mcse: float = 0.0

    @classmethod
    def of(cls, row) -> "Est":
        """From a summary row (a Series or a named tuple with `value` and `mcse`)."""
        get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
        mcse = get("mcse", 0.0)
        return cls(float(get("value")), 0.0 if mcse is None or pd.isna(mcse) else float(mcse))

    @property
    def low(self) -> float:
        return self.value - Z * self.mcse

    @property
    def high(self) -> float:
        return self.value + Z * self.mcse

    def minus(self, other: "Est") -> "Est":
        """The difference of two independently estimated values."""
        return Est(self.value - other.value, math.hypot(self.mcse, other.mcse))

    def ratio(self, other: "Est") -> "Est":
        """self / other with the delta-method MCSE (independent estimates)."""
        r = self.value / other.value
        rel = math.hypot(self.mcse / self.value if self.value else 0.0, other.mcse / other.value)
        return Est(r, abs(r) * rel)

    def __str__(self) -> str:
        return fmt(self)


def fmt(x: Est | float, mcse: float | None = None, note: str | None = None) -> str:
    """'value (mcse)', with the decimals the MCSE warrants (its first significant digit, at least
    two decimals for values below 10); a number without MCSE to three significant digits; a `note`
    joins the bracket: 'value (mcse; note)'."""
    if note is not None:
        text = fmt(x, mcse)
        return text[:-1] + f"; {note})" if text.endswith(")") else f"{text} ({note})"
    if not isinstance(x, Est):
        x = Est(float(x), 0.0 if mcse is None else float(mcse))
    if not math.isfinite(x.value):
        return "NA"
    if x.mcse <= 0 or not math.isfinite(x.mcse):
        return number(x.value)
    d = max(0, -math.floor(math.log10(x.mcse)))
    d = max(d, 2 if abs(x.value) < 10 else 0)
    if x.value and round(x.value, d) == 0:  # a value far below its MCSE: show its first digit, not -0.0000
        d = max(d, -math.floor(math.log10(abs(x.value))))
    return f"{x.value:.{d}f} ({x.mcse:.{d}f})"


def number(v: float, sig: int = 3) -> str:
    """A number without MCSE: `sig` significant digits, no trailing zeros, no exponent for
    ordinary magnitudes (0.05, 0.95, 98, 5000)."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    text = f"{v:.{sig}g}"
    return f"{v:.0f}" if "e" in text and abs(v) >= 1 else text


# -- the ledger ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One comparison an answer made: `relation` between `a` and `b` (an Est or a bound), and the
    words it produced."""

    words: str
    relation: str  # gt | lt | ge | le | within | agrees
    a: Est
    b: Est
    tol: float = 0.0


_LEDGERS: list[list[Claim]] = []


@contextmanager
def recording() -> Iterator[list[Claim]]:
    """Collect the claims made while an answer is computed (tests re-check each of them)."""
    ledger: list[Claim] = []
    _LEDGERS.append(ledger)
    try:
        yield ledger
    finally:
        _LEDGERS.remove(ledger)


def _claim(words: str, relation: str, a: Est, b: Est, tol: float = 0.0) -> str:
    for ledger in _LEDGERS:
        ledger.append(Claim(words, relation, a, b, tol))
    return words


def _as_est(b: Est | float) -> Est:
    return b if isinstance(b, Est) else Est(float(b), 0.0)


# -- the comparisons -----------------------------------------------------------------------------

def differs(a: Est, b: Est | float) -> bool:
    """True when a and b differ beyond Z MCSE of their difference."""
    d = a.minus(_as_est(b))
    return abs(d.value) > Z * d.mcse


def compare(a: Est, b: Est | float, more: str = "more than", less: str = "less than",
            same: str = "indistinguishable (within 2 MCSE) from") -> str:
    """The word relating a to b: `more`, `less`, or `same` when the difference is within Z MCSE."""
    b = _as_est(b)
    if not differs(a, b):
        return _claim(same, "agrees", a, b)
    return _claim(more, "gt", a, b) if a.value > b.value else _claim(less, "lt", a, b)


def at_least(x: Est, bound: float, text: str | None = None) -> str | None:
    """'at least <bound>' when the whole Z-MCSE band of x is at or above the bound, else None."""
    if x.low >= bound:
        return _claim(text or f"at least {number(bound)}", "ge", x, Est(bound))
    return None


def at_most(x: Est, bound: float, text: str | None = None) -> str | None:
    """'at most <bound>' when the whole Z-MCSE band of x is at or below the bound, else None."""
    if x.high <= bound:
        return _claim(text or f"at most {number(bound)}", "le", x, Est(bound))
    return None


def within(x: Est, target: float, tol: float, text: str | None = None) -> str | None:
    """'within <tol> of <target>' when |x - target| plus Z MCSE stays inside tol, else None."""
    if abs(x.value - target) + Z * x.mcse <= tol:
        return _claim(text or f"within {number(tol)} of {number(target)}", "within", x, Est(target), tol)
    return None


def agrees(x: Est, target: Est | float, text: str | None = None) -> str | None:
    """'agrees with <target>' when the difference is within Z MCSE (the data cannot tell them
    apart), else None."""
    t = _as_est(target)
    if not differs(x, t):
        return _claim(text or f"agrees with {number(t.value)}", "agrees", x, t)
    return None


def bound_phrase(x: Est, bound: float) -> str:
    """How x stands against a bound: 'above', 'below' (beyond Z MCSE) or 'indistinguishable from'
    it, followed by the bound."""
    return f"{compare(x, bound, 'above', 'below', 'indistinguishable (within 2 MCSE) from')} {number(bound)}"


def span(xs: list[Est]) -> str:
    """'low-high' of several estimates (each endpoint with its MCSE), or the one value."""
    if not xs:
        return "NA"
    lo = min(xs, key=lambda e: e.value)
    hi = max(xs, key=lambda e: e.value)
    return fmt(lo) if lo == hi else f"{fmt(lo)} to {fmt(hi)}"
