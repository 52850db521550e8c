"""Expansion of a parameter grid into a list of simulation conditions.

A grid maps dotted config paths (``"method.matching.caliper"``) to the list
of values to try. The conditions come out in a fixed order, which the tables follow; the random
streams do not depend on it: they are keyed by each condition's factor values (sim.engine.seeds).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["expand_grid", "conditions_frame"]


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid values, first key varying slowest.

    Order is that of ``itertools.product`` over the keys in insertion order,
    i.e. like nested for-loops with the first key outermost, so
    ``{"a": [1, 2], "b": [0, 1]}`` gives a=1,b=0; a=1,b=1; a=2,b=0; a=2,b=1.
    An empty grid yields ``[{}]``: one condition with the base config.

    Values must be lists (tuples and other non-string sequences such as
    OmegaConf ``ListConfig`` are accepted too); a bare scalar or string is
    rejected rather than silently iterated.
    """
    if not isinstance(grid, Mapping):
        raise ValueError(
            f"grid must be a dict mapping dotted config paths to lists of values, "
            f"got {type(grid).__name__}"
        )
    keys = list(grid.keys())
    values: list[list[Any]] = []
    for key in keys:
        if not isinstance(key, str) or not key:
            raise ValueError(f"grid keys must be non-empty strings (dotted config paths), got {key!r}")
        vals = grid[key]
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            raise ValueError(
                f"grid[{key!r}] must be a list of values, got {type(vals).__name__} {vals!r}; "
                f"wrap a single value as [{vals!r}]"
            )
        if len(vals) == 0:
            raise ValueError(f"grid[{key!r}] must contain at least one value, got an empty list")
        values.append(list(vals))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _cell(value: Any) -> Any:
    """A list or mapping factor value as its JSON text, so that tables can group and index by it."""
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, tuple, Mapping)) else value


def conditions_frame(conditions: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per condition (column ``condition`` = index) for joining onto results.

    The runner tags rows with the integer condition index only; this table
    lets reports merge back the grid parameters by that index.
    """
    rows = [{"condition": i, **{k: _cell(v) for k, v in dict(c).items()}} for i, c in enumerate(conditions)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame({"condition": pd.Series([], dtype="int64")})
    return frame
