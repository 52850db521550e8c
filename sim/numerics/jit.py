"""numba, as every compiled kernel of sim imports it: with the compiled functions' unique ids drawn
at random instead of counted from 1 in each process.

numba names a compiled function by its qualified name and that id, and its disk cache keeps the
machine code under the name. Two processes compiling different functions of one name (numba's own
quicksort, specialised for np.sort in one and np.argsort in another) under the same count wrote
kernels whose code shared a symbol; a third process loading both linked one body for both, and
gave wrong numbers (the composite p-values and Lee bounds, in a suite whose workers compiled in
one order: numba issue #10486, which pytensor fixes the same way). Random 63-bit ids make such a
clash vanishingly unlikely; `tests/test_numba_ids.py` builds the clash and shows numba's counter
failing it."""

from __future__ import annotations

import secrets

import numba
from numba.core import bytecode


class RandomIds:
    """An endless iterator of random 63-bit ids (os.urandom: a forked process draws its own)."""

    def __iter__(self) -> RandomIds:
        return self

    def __next__(self) -> int:
        return secrets.randbits(63)


if not isinstance(bytecode.FunctionIdentity._unique_ids, RandomIds):
    bytecode.FunctionIdentity._unique_ids = RandomIds()

__all__ = ["numba"]
