"""Per-replicate random number generators.

Each (condition, replicate) pair gets its own independent stream derived
from the experiment seed via ``SeedSequence.spawn_key``.  Seeds therefore do
not depend on execution order, worker count, chunk layout or resumption, which
is what makes results reproducible to the bit.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["replicate_rng"]


def _check_nonneg_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def replicate_rng(seed: int, condition_index: int, replicate: int) -> np.random.Generator:
    """Independent generator for one replicate of one condition.

    Equal to ``default_rng(SeedSequence(seed, spawn_key=(condition_index, replicate)))``.
    """
    seed = _check_nonneg_int(seed, "seed")
    condition_index = _check_nonneg_int(condition_index, "condition_index")
    replicate = _check_nonneg_int(replicate, "replicate")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(condition_index, replicate)))
