"""Per-replicate random number generators, keyed by what a condition is.

Replicate r of a condition draws from ``SeedSequence(seed, spawn_key=(*stream, r))``, where the
stream is a stable digest of the condition's factor values (``condition_stream``), not of its
position in the grid. So a condition gives the same replicates whether it runs alone, in a
sub-grid, in a reordered or extended grid, with any n_jobs, chunking or resume. Factors listed as
shared (common random numbers, e.g. the true effect) are left out of the digest: conditions that
differ only in them draw the same cohorts, so their contrasts are paired.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["replicate_rng", "replicate_rngs", "condition_stream"]


def _check_nonneg_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _canonical(value: Any) -> Any:
    """JSON-able form in which equal settings are equal: 1 and 1.0 alike, mappings sorted."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return value if not isinstance(value, np.bool_) else bool(value)
    if isinstance(value, (numbers.Real, np.floating, np.integer)):
        return repr(float(value))
    return repr(value)


def condition_stream(factors: Mapping[str, Any], shared: Iterable[str] = ()) -> tuple[int, ...]:
    """Four 32-bit words of SHA-256 over the condition's factor values, less the `shared` ones."""
    shared = set(shared)
    text = json.dumps(_canonical({k: v for k, v in factors.items() if k not in shared}), sort_keys=True)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "big") for i in range(0, 16, 4))


def replicate_rng(seed: int, stream: int | tuple[int, ...], replicate: int) -> np.random.Generator:
    """Independent generator for one replicate of one condition's stream:
    ``default_rng(SeedSequence(seed, spawn_key=(*stream, replicate)))``."""
    return replicate_rngs(seed, stream, replicate, replicate)[0]


def replicate_rngs(seed: int, stream: int | tuple[int, ...], first: int, last: int) -> list[np.random.Generator]:
    """replicate_rng of replicates first..last, the arguments checked once (a chunk's generators)."""
    seed = _check_nonneg_int(seed, "seed")
    words = (stream,) if isinstance(stream, numbers.Integral) and not isinstance(stream, bool) else tuple(stream)
    words = tuple(_check_nonneg_int(w, "stream") for w in words)
    first, last = _check_nonneg_int(first, "replicate"), _check_nonneg_int(last, "replicate")
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*words, r)))
            for r in range(first, last + 1)]
