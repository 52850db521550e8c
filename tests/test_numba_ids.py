"""numba's disk cache across processes (sim.numerics.jit). numba names a compiled function by its
qualified name and an id counted from 1 in each process; kernels compiled in two processes under
the same count share a symbol, and a third process loading both runs one body for both (numba
issue #10486). The clash is built here on purpose: two of numba's quicksorts (one name, two
orders), each compiled into the cache by its own process in the same steps, so that counted ids
agree; a third process loads both. With numba's counter it sorts both ways alike; with sim's
random ids it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MODULE = """
import os
if os.environ.get("SIM_JIT") == "1":
    from sim.numerics.jit import numba
else:
    import numba
from numba.misc.quicksort import make_jit_quicksort

run_up = make_jit_quicksort(lt=lambda a, b: a < b).run_quicksort
run_down = make_jit_quicksort(lt=lambda a, b: a > b).run_quicksort

@numba.njit(cache=True)
def sort_up(a):
    b = a.copy()
    run_up(b)
    return b

@numba.njit(cache=True)
def sort_down(a):
    b = a.copy()
    run_down(b)
    return b
"""

SORT = """
import json, sys, numpy as np
import clash
x = np.array([3.0, 1.0, 2.0, 0.5])
print(json.dumps([getattr(clash, name)(x).tolist() for name in sys.argv[1:]]))
"""


def _sorts(tmp_path: Path, jit: bool) -> list:
    """sort_up and sort_down as a process loads them from the cache two other processes wrote."""
    tmp_path.mkdir()
    (tmp_path / "clash.py").write_text(MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
           "SIM_JIT": "1" if jit else "0"}
    for names in (["sort_up"], ["sort_down"], ["sort_up", "sort_down"]):
        p = subprocess.run([sys.executable, "-c", SORT, *names], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # ~7 s: six processes compiling or loading numba's quicksort
def test_kernels_cached_by_different_processes_keep_their_own_code(tmp_path):
    assert _sorts(tmp_path / "sim", jit=True) == [[0.5, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.5]]
    # numba's own counter (sim.numerics.jit not imported): the same steps sort both ways alike
    up, down = _sorts(tmp_path / "numba", jit=False)
    assert up == down, (up, down)
