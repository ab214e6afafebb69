"""Peak host memory of one measurement: resident-set high-water mark growth, in MiB.

    settle()                      # gc + malloc_trim: hand setup's freed temporaries back
    base = reset_peak()           # VmHWM := VmRSS (Linux >= 4.0), returns that RSS
    ... the workload ...
    growth = peak_rss_mb() - base

The bench tunes glibc malloc to keep freed memory (numpy_gpt.nn.runtime.keep_freed_memory), so
memory freed during setup (e.g. float64 draws cast to float32 at init) would otherwise sit in
the heap and be reused by the workload, hiding part of its growth. `settle()` calls
malloc_trim(0), which returns free heap pages to the OS whatever the trim threshold is.

Where /proc/self/clear_refs cannot reset the high-water mark (not Linux, or not permitted)
the fallback is getrusage's ru_maxrss, a peak since process start: still correct when the
workload is the largest thing the process did, which the bench arranges (one workload per
process, setup smaller than the step). `method` says which was used.

Ref: proc(5) /proc/pid/status VmHWM and /proc/pid/clear_refs ("5"); malloc_trim(3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys

MIB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Current resident set size in MiB (None where /proc is absent)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def settle() -> None:
    """Collect garbage and return freed heap memory to the OS (glibc only)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakTracker:
    """Peak RSS growth from the moment of `start()`; method "vmhwm" or "ru_maxrss"."""

    def __init__(self) -> None:
        self.base_mb: float = 0.0
        self.method = "ru_maxrss"

    def start(self) -> float:
        settle()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.method = "vmhwm"
        except OSError:
            self.method = "ru_maxrss"
        self.base_mb = rss_mb() or _maxrss_mb()
        return self.base_mb

    def peak_mb(self) -> float:
        """Peak RSS since start(), in MiB (absolute, not the growth)."""
        if self.method == "vmhwm":
            kb = _status_kb("VmHWM")
            if kb is not None:
                return kb / 1024
        return _maxrss_mb()

    def growth_mb(self) -> float:
        return max(self.peak_mb() - self.base_mb, 0.0)


def _maxrss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / MIB if sys.platform == "darwin" else r / 1024
