"""One BLAS thread in the process that computes chunks, as in joblib's workers.

Why: a chunk's linear algebra is on skinny arrays (at N = 263 and 250 replicates a chunk, the core
covariates' 65,750 x 3 latents times a 3 x 3 Cholesky factor), where OpenBLAS's second thread buys
nothing and, on a busy machine, waits for a core: at a load of about 9 on 2 cores that product took
7-84 ms with two threads and 0.8 ms with one, and it was the largest single cost of a chunk.
joblib's workers already run one thread each (loky sets OPENBLAS_NUM_THREADS to cpus // n_jobs);
this gives a process computing chunks itself (n_jobs=1) the same. Results: a chunk's products (the
core latents') are the same to the bit with one thread or two (tests/test_blas.py); some products
are not (a 400 x 400 one differs in its last bits), so one thread in every process computing chunks
also keeps results from depending on n_jobs. An explicit OPENBLAS_NUM_THREADS or OMP_NUM_THREADS
is left to rule.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: OpenBLAS's thread setter under the names its builds export (numpy's and scipy's wheels each
#: ship their own library, with a prefix and, for 64-bit integers, a suffix)
SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
           "scipy_openblas_set_num_threads64_")
GETTERS = tuple(name.replace("_set_", "_get_") for name in SETTERS)
ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
_SET: set[str] = set()


def one_blas_thread() -> int:
    """Set each OpenBLAS loaded in this process to one thread, once per library; the number set so
    far. Cheap enough to call per chunk, which catches a library loaded after the first (scipy's)."""
    if any(os.environ.get(k) for k in ENV) or not sys.platform.startswith("linux"):
        return 0
    for path in openblas_libraries():
        if path not in _SET:
            _SET.add(path)
            set_threads(path, 1)
    return len(_SET)


def openblas_libraries() -> list[str]:
    """The paths of the OpenBLAS libraries mapped into this process (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split(maxsplit=5)[-1].strip() for line in fh if line.count(" ") >= 5}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/") and "openblas" in os.path.basename(p).lower())


def _function(path: str, names: tuple[str, ...]):
    try:
        lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing loads twice
    except OSError:
        return None
    return next((getattr(lib, n) for n in names if hasattr(lib, n)), None)


def set_threads(path: str, n: int) -> bool:
    """Set the OpenBLAS at `path` to n threads; False when it exports no setter."""
    setter = _function(path, SETTERS)
    if setter is None:
        return False
    setter.argtypes, setter.restype = (ctypes.c_int,), None
    setter(int(n))
    return True


def threads(path: str) -> int | None:
    """The OpenBLAS at `path`'s thread count (None when it exports no getter)."""
    getter = _function(path, GETTERS)
    if getter is None:
        return None
    getter.argtypes, getter.restype = (), ctypes.c_int
    return int(getter())
