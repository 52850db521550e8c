"""Freed memory kept in the process's heap for the next chunk.

Why: glibc gives each large array (above 128 kB, a threshold it raises as such arrays are freed)
pages of its own and hands them back to the system when the array is freed, so each chunk's
arrays fault in freshly zeroed pages. On the 2-core bench machine that was about a seventh of a
replicate's time. Serving arrays up to 32 MB (glibc's largest threshold) from the heap and keeping
freed heap memory lets the next chunk reuse the same pages; a process holds on to the memory of
its largest chunk, no more. Set in whichever process computes chunks: the workers, or the calling
process itself with n_jobs=1, for the rest of its life. Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30  # freed memory beyond this is returned to the system


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when glibc accepted both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
