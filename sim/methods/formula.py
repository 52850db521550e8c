"""Propensity-score design matrices from a formula string, for PS models beyond main effects:
squares (``I(age**2)``), splines (``bs(age, df=4)``, ``cr(age, df=4)``), interactions (``male:escc``,
``age*male``), categorical codings (``C(escc)``).

Why patsy: it is the formula engine statsmodels itself uses (installed with it), R's formula
language with R's codings, and its spline transforms learn their knots from the data they are given,
so each synthetic cohort gets its own knots as a re-analysis of that cohort would. The intercept is
dropped from the matrix because the PS fitter adds its own; categorical terms keep R's
reduced-rank (treatment) coding, so the matrix stays full rank beside that intercept.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["PSDesign", "formula_columns", "ps_design", "split_formula"]

#: names a formula may call or reach without their being data columns
_NOT_COLUMNS = frozenset({"np", "numpy", "I", "C", "Q", "bs", "cr", "cc", "te", "center", "standardize",
                          "scale", "log", "log1p", "exp", "sqrt", "abs", "Treatment", "Sum", "Poly", "Diff",
                          "Helmert", "True", "False", "None"})


@dataclass(frozen=True)
class PSDesign:
    """A PS design matrix (no intercept column) and the name of each column, as patsy names them."""

    X: np.ndarray
    names: tuple[str, ...]
    formula: str


def split_formula(formula: str) -> tuple[str | None, str]:
    """``"treat ~ a + b"`` -> ("treat", "a + b"); ``"~ a + b"`` and ``"a + b"`` -> (None, "a + b")."""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"PS formula must be a non-empty string such as 'age + I(age**2) + male'; got {formula!r}")
    if formula.count("~") > 1:
        raise ValueError(f"PS formula has more than one '~': {formula!r}")
    lhs, _, rhs = formula.rpartition("~")
    lhs = lhs.strip() or None
    if not rhs.strip():
        raise ValueError(f"PS formula has nothing right of '~': {formula!r}")
    return lhs, rhs.strip()


def _term_codes(rhs: str) -> list[str]:
    from patsy import ModelDesc, PatsyError

    try:
        desc = ModelDesc.from_formula(rhs)
    except PatsyError as exc:
        raise ValueError(f"PS formula {rhs!r} cannot be parsed: {str(exc).splitlines()[0]}") from None
    return [factor.code for term in desc.rhs_termlist for factor in term.factors]


def formula_columns(formula: str) -> tuple[str, ...]:
    """The data columns a formula reads (in order of first mention), found by walking each term's
    Python code: every bare name that is neither called nor a known transform or module."""
    _, rhs = split_formula(formula)
    seen: dict[str, None] = {}
    for code in _term_codes(rhs):
        try:
            tree = ast.parse(code, mode="eval")
        except SyntaxError:
            raise ValueError(f"PS formula {rhs!r} cannot be parsed: term {code!r} is not a valid expression") from None
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        bases = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Name) and id(node) not in called and id(node) not in bases
                    and node.id not in _NOT_COLUMNS):
                seen.setdefault(node.id)
    return tuple(seen)


def ps_design(data: Mapping[str, np.ndarray], formula: str, *, key: str = "PS formula") -> PSDesign:
    """The PS design matrix of ``formula``'s right-hand side on ``data`` (a DataFrame or a dict of
    equal-length arrays). ``key`` names the setting in errors (``--formula``,
    ``method.propensity.formula``). Missing columns, NA values and non-finite results are errors,
    never silently dropped rows."""
    from patsy import PatsyError, dmatrix

    _, rhs = split_formula(formula)
    missing = [c for c in formula_columns(formula) if c not in data]
    if missing:
        raise ValueError(f"{key}: column(s) not found: {', '.join(missing)} (formula {rhs!r})")
    try:
        M = dmatrix(rhs, data, NA_action="raise", return_type="matrix")
    except PatsyError as exc:
        raise ValueError(f"{key}: {str(exc).splitlines()[0]} (formula {rhs!r})") from None
    names = list(M.design_info.column_names)
    X = np.asarray(M, dtype=float)
    if "Intercept" in names:
        k = names.index("Intercept")
        X = np.delete(X, k, axis=1)
        del names[k]
    if X.shape[1] == 0:
        raise ValueError(f"{key}: the formula {rhs!r} has no terms besides the intercept")
    bad = [names[j] for j in range(X.shape[1]) if not np.all(np.isfinite(X[:, j]))]
    if bad:
        raise ValueError(f"{key}: term(s) with non-finite values: {', '.join(bad)} (formula {rhs!r})")
    return PSDesign(X=np.ascontiguousarray(X), names=tuple(names), formula=rhs)
