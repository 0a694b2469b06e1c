"""Keep freed memory in the process for reuse: fewer page faults on the hot path.

A worker allocates and frees the same large tensors every update (a rollout's
activations and gradients: up to tens of MB). By default glibc's malloc serves blocks
over 128 KB (up to 32 MB, adapting) with fresh ``mmap`` pages and returns them on ``free``, so every
update pays a page fault per 4 KB touched, expensive in a VM. Raising the mmap and trim
thresholds makes malloc keep that memory and reuse it (scripts/RESULTS.md records the
gain).
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # larger than any tensor of a worker
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes a C int


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; False (and nothing changed) on other C libraries."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
