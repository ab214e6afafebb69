"""Timing one step: warm-up, then N timed runs with perf_counter (STYLE.md B2).

    t = time_steps(step, warmup=2, iters=10, sync=adapter.sync)
    t.median_ms, t.min_ms, t.first_ms

`sync` is called before every clock read: torch.cuda.synchronize() on CUDA, a no-op on the
CPU, where calls return when the work is done. The first warm-up call is reported on its own
(`first_ms`): it includes one-time costs such as torch.compile's compilation or the first
touch of freshly allocated memory.

Median and min of N, not the mean: on a shared machine the noise is one-sided (other
processes only ever make a run slower), so min estimates the undisturbed cost and median the
typical one; a large gap between them says the machine was busy.

Ref: nanoGPT bench.py (burn-in, then timed iterations); llm.c dev/cuda benchmark_kernel.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timing:
    times_ms: list[float]
    first_ms: float | None  # the first warm-up call, None without warm-up

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)


def time_steps(step: Callable[[], object], warmup: int, iters: int,
               sync: Callable[[], None] = lambda: None) -> Timing:
    """Run `step` warmup times untimed (the first one clocked apart), then `iters` timed."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    first = None
    for i in range(warmup):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i == 0:
            first = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return Timing(times, first)
