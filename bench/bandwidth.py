"""The memory bandwidth that MBU is measured against: a large-array copy and a read, like
STREAM, in the same run, on the same device, with the same threads.

    gbps, detail = memory_bandwidth(backend, threads=2, quick=False)

Two kernels on arrays far larger than the last-level cache, so that they stream from DRAM
(HBM on a GPU):
    copy   dst[:] = src, counted as 2 x bytes (one read, one write: STREAM's convention; the
           write-allocate read of dst that a CPU also performs is not counted, so copy
           understates the traffic a little);
    read   a sum over the array, counted as 1 x bytes (what decoding does to its weights).
NumPy: np.copyto / ndarray.sum over `threads` equal slices in a thread pool (one NumPy call
runs on one core; its loops release the GIL, so the slices run at once), at `threads` and at
one thread; torch: Tensor.copy_ / Tensor.sum on its intra-op threads, at `threads` and at one;
CUDA: torch or CuPy device arrays, synchronised before each clock read. Arrays of 256 MiB
on the CPU (8x this machine's 32 MiB L3), 1 GiB on CUDA, 64 MiB with --quick (which measures
less). Each repeated, the best repetition kept. The bandwidth is the best rate of them
all: the most this memory was seen to deliver in this run, which is what "fraction of the
roofline" should divide by (on this shared 2-core VM one thread has streamed faster than
two). Every rate is in the detail.

Also the last-level cache size (`cache_bytes`; /sys on the CPU, the device's L2 on CUDA): a
decode whose weights and KV cache fit in it is served from cache and may read faster than
this bandwidth (bench/roofline.py then says so instead of calling the row impossible).

Ref: McCalpin, STREAM (https://www.cs.virginia.edu/stream/); Pope et al. 2022 (decoding is
memory-bound); the serving world's MBU (Databricks / MosaicML, "LLM inference performance
engineering", 2023).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import Backend
from .peak import spread, time_calls

CPU_MIB, QUICK_MIB, CUDA_MIB = 256, 64, 1024  # array sizes (float32)
CPU_REPS, QUICK_REPS, CUDA_REPS = 6, 3, 10


def _rates(run: Callable[[], Any], nbytes: int, reps: int, sync: Callable[[], Any]
           ) -> list[float]:
    """GB/s of each of `reps` calls moving `nbytes`, after one warm-up call."""
    return [nbytes / s / 1e9 for s in time_calls(run, reps, sync)]


def cpu_cache_bytes(root: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size of the highest-level data or unified cache of cpu0, in bytes (None if the
    kernel does not say)."""
    best: tuple[int, int] | None = None
    for index in sorted(Path(root).glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not size:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1].upper(), 1)
        value = int(size.rstrip("KMGkmg")) * unit
        if best is None or level > best[0]:
            best = (level, value)
    return best[1] if best else None


def _numpy_kernels(threads: int, mib: int, pools: list[Any]
                   ) -> dict[str, tuple[Callable[[], Any], int]]:
    """Copy and read at `threads` and at 1 thread; the thread pools go into `pools`."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    n = mib * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.zeros_like(src)  # both written once: every page is mapped before timing
    kernels = {}
    for t in dict.fromkeys((threads, 1)):
        pool = ThreadPoolExecutor(t)
        pools.append(pool)
        cuts = [(i * n // t, (i + 1) * n // t) for i in range(t)]

        def copy(pool=pool, cuts=cuts) -> None:
            list(pool.map(lambda c: np.copyto(dst[c[0]:c[1]], src[c[0]:c[1]]), cuts))

        def read(pool=pool, cuts=cuts) -> None:
            list(pool.map(lambda c: src[c[0]:c[1]].sum(), cuts))

        kernels[f"copy, {t} thread{'s' if t > 1 else ''}"] = (copy, 2 * 4 * n)
        kernels[f"read, {t} thread{'s' if t > 1 else ''}"] = (read, 4 * n)
    return kernels


def memory_bandwidth(backend: Backend, threads: int, quick: bool = False
                     ) -> tuple[float, dict[str, Any]]:
    """(best GB/s, {"op", "per_kernel_gbps", "spread", "bytes", "cache_bytes", ...}) on
    `backend`'s framework and device."""
    cuda = backend.device == "cuda"
    mib = QUICK_MIB if quick else (CUDA_MIB if cuda else CPU_MIB)
    reps = QUICK_REPS if quick else (CUDA_REPS if cuda else CPU_REPS)
    sync: Callable[[], Any] = lambda: None
    cache = None if cuda else cpu_cache_bytes()
    n = mib * 2**20 // 4
    pools: list[Any] = []
    if backend.framework == "numpy":
        kernels = _numpy_kernels(max(threads, 1), mib, pools)
        op = "np.copyto / ndarray.sum over thread-pool slices, float32"
    elif backend.framework == "torch":
        import torch

        src = torch.ones(n, device=backend.device)
        dst = torch.zeros_like(src)
        if cuda:
            sync = torch.cuda.synchronize
            cache = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", None)
        kernels = {"copy": (lambda: dst.copy_(src), 2 * 4 * n),
                   "read": (lambda: src.sum(), 4 * n)}
        op = f"torch Tensor.copy_ / Tensor.sum, float32, {backend.device}"
    elif backend.framework == "cupy":
        import cupy

        src = cupy.ones(n, dtype="float32")
        dst = cupy.zeros(n, dtype="float32")
        device = cupy.cuda.Device()
        sync = device.synchronize
        cache = getattr(device, "attributes", {}).get("L2CacheSize")
        kernels = {"copy": (lambda: cupy.copyto(dst, src), 2 * 4 * n),
                   "read": (lambda: src.sum(), 4 * n)}
        op = "cupy.copyto / ndarray.sum, float32, cuda"
    else:
        raise ValueError(f"no bandwidth measurement for framework {backend.framework!r}")
    rates: dict[str, list[float]] = {}
    if backend.framework == "torch" and not cuda:
        import torch

        saved = torch.get_num_threads()
        for t in dict.fromkeys((max(threads, 1), 1)):
            torch.set_num_threads(t)
            for name, (run, nbytes) in kernels.items():
                rates[f"{name}, {t} thread{'s' if t > 1 else ''}"] = _rates(run, nbytes, reps,
                                                                            sync)
        torch.set_num_threads(saved)
    else:
        for name, (run, nbytes) in kernels.items():
            rates[name] = _rates(run, nbytes, reps, sync)
    for pool in pools:
        pool.shutdown()
    best = max(rates, key=lambda k: max(rates[k]))
    return max(rates[best]), {
        "op": op, "best_kernel": best, "bytes": 4 * n, "reps": reps, "quick": quick,
        "per_kernel_gbps": {k: round(max(v), 2) for k, v in rates.items()},
        "spread": round(spread(rates[best]), 4), "cache_bytes": cache,
        "threads": threads, "cpu_count": os.cpu_count()}
