"""Process-level tuning for the command lines (train, bench), never applied on import.

NumPy allocates a fresh array for most intermediate results. glibc's malloc serves large
blocks with mmap and returns freed memory to the OS, so every training step page-faults its
activations back in: the kernel zeroes each 4 KiB page again. On the 6L/384d model that costs
~10% of a step. `keep_freed_memory()` asks glibc to serve all blocks from the heap and never
trim it, so freed activations are reused by the next step. Peak RSS is unchanged; memory is
simply not handed back between steps. PyTorch's CPU allocator sits on the same malloc, so
benchmarks that run both twins in one process tune both alike.

Ref: mallopt(3): M_MMAP_MAX, M_TRIM_THRESHOLD.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tune glibc malloc to keep freed memory for reuse; returns False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1  # every block from the heap, none through mmap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never give the heap's top back
    return bool(ok)
