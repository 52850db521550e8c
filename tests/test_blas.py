"""One BLAS thread in a process computing chunks (sim.engine.blas): it takes, it leaves an explicit
setting alone, and it changes none of a chunk's products."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS beside numpy's)

from sim.engine import blas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not blas.openblas_libraries(),
                                reason="OpenBLAS on Linux")


@pytest.fixture
def restore(monkeypatch):
    """Each library's thread count and the module's memory, as they were."""
    for k in blas.ENV:
        monkeypatch.delenv(k, raising=False)
    before = {p: blas.threads(p) for p in blas.openblas_libraries()}
    monkeypatch.setattr(blas, "_SET", set())
    yield before
    for p, n in before.items():
        if n is not None:
            blas.set_threads(p, n)


def numpy_openblas() -> str:
    np.ones((2, 2)) @ np.ones((2, 2))
    return next(p for p in blas.openblas_libraries() if "numpy" in p)


def test_every_openblas_runs_one_thread(restore):
    for p in restore:
        blas.set_threads(p, 2)
    assert blas.one_blas_thread() == len(restore) >= 2
    assert {p: blas.threads(p) for p in restore} == {p: 1 for p in restore}


def test_an_explicit_setting_rules(restore, monkeypatch):
    path = numpy_openblas()
    blas.set_threads(path, 2)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert blas.one_blas_thread() == 0
    assert blas.threads(path) == 2


def test_a_chunks_products_are_the_same_to_the_bit(restore):
    """The core latents of a chunk (B x N rows, 3 columns) times the Cholesky factor, and the index L
    (other shapes may differ: a 400 x 400 product does, in its last bits, here)."""
    path = numpy_openblas()
    rng = np.random.default_rng(3)
    a, m = rng.standard_normal((65_750, 3)), rng.standard_normal((3, 3))

    def products():
        return [a @ m.T, (a @ m.T) @ m[0]]

    blas.set_threads(path, 2)
    if blas.threads(path) != 2:
        pytest.skip("OpenBLAS built for one thread")
    two = products()
    blas.set_threads(path, 1)
    for p, q in zip(two, products()):
        assert np.array_equal(p, q)
