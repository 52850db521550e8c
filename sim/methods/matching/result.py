"""What a matching returns (its own module so that the matcher and its run-time checks both read
it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match`.

    ``treated_idx``/``control_idx``: one row per treated-control link, sorted by
    ``pair_id`` then by round (nearest first). ``pair_id`` (length n): id of the
    treated unit's matched set (0..n_treated_matched-1, in increasing treated
    index), -1 if unmatched. A control reused under ``replace=True`` carries the
    smallest id of the sets it belongs to; use the link arrays for the full
    picture. ``weights`` (length n): ATT weights, 1 for matched treated, for a
    control the sum over its links of 1/k_i (k_i = controls of that treated
    unit), 0 if unmatched (MatchIt additionally rescales control weights to sum
    to the number of matched controls; we do not). ``n_pairs`` counts links
    (= pairs for 1:1).
    """

    treated_idx: np.ndarray
    control_idx: np.ndarray
    pair_id: np.ndarray
    weights: np.ndarray
    caliper_width: float | None
    n_pairs: int
    n_treated_matched: int
    n_treated: int
    n_control: int
    notes: tuple = ()
