"""The matmul peak that MFU is measured against, on the same device, dtype, run and threads.

    gflops, detail = matmul_peak(backend, quick=False)

The best GFLOP/s (2 n^3 / t) over several large square matmuls and repetitions: NumPy's
np.matmul (OpenBLAS here) in float32/float64 for numpy_gpt, torch.mm for torch on the CPU,
torch.mm in float32 (TF32 off), TF32 or bfloat16 on CUDA, and cupy.matmul in float32 for
numpy_gpt on CuPy (cuBLAS; CuPy leaves TF32 off unless CUPY_TF32=1). The best, not the median, of
the few sizes and repeats: it estimates what the BLAS can reach on this machine, which is
what "fraction of peak" should divide by. Measured in its own worker process with the same
thread settings as the measurements.

Ref: nanoGPT estimate_mfu (which divides by the A100's datasheet 312 TFLOP/s instead; a
measured peak makes the ratio meaningful on any machine, including this 2-core CPU).
"""

from __future__ import annotations

import time
from typing import Any

from .backends import Backend

CPU_SIZES = (1024, 2048, 3072)
CUDA_SIZES = (4096, 8192)
QUICK_SIZES = (512,)


def time_calls(run: Any, reps: int, sync: Any) -> list[float]:
    """Seconds of each of `reps` calls after one warm-up call (first-touch, thread pool
    start, cuBLAS heuristics)."""
    run()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def spread(rates: list[float]) -> float:
    """How much the repetitions of the best measurement disagree: (max - min) / max of their
    rates. The impossibility guard (bench/runner.py) allows a row this much above the peak."""
    return (max(rates) - min(rates)) / max(rates) if rates and max(rates) > 0 else 0.0


def _best(run: Any, n: int, reps: int, sync: Any, spreads: dict[int, float]) -> float:
    rates = [2 * n**3 / t / 1e9 for t in time_calls(run, reps, sync)]
    spreads[n] = spread(rates)
    return max(rates)


def matmul_peak(backend: Backend, quick: bool = False) -> tuple[float, dict[str, Any]]:
    """(best GFLOP/s, {"op", "dtype", "sizes", "per_size"}) for backend's matmul precision."""
    reps = 2 if quick else 5
    per_size: dict[int, float] = {}
    spreads: dict[int, float] = {}
    if backend.framework == "numpy":
        import numpy as np

        dt = np.dtype(backend.dtype)
        sizes = QUICK_SIZES if quick else CPU_SIZES
        rng = np.random.default_rng(0)
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(dt)
            b = rng.standard_normal((n, n)).astype(dt)
            out = np.empty((n, n), dt)
            per_size[n] = _best(lambda a=a, b=b, out=out: np.matmul(a, b, out=out), n, reps,
                                lambda: None, spreads)
        op = f"np.matmul {dt}"
    elif backend.framework == "torch":
        import torch

        device = torch.device(backend.device)
        cuda = device.type == "cuda"
        torch.backends.cuda.matmul.allow_tf32 = backend.precision == "tf32"
        dt = {"float32": torch.float32, "tf32": torch.float32, "float64": torch.float64,
              "bfloat16": torch.bfloat16}[backend.precision]
        sizes = QUICK_SIZES if quick else (CUDA_SIZES if cuda else CPU_SIZES)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        g = torch.Generator(device=device).manual_seed(0)
        for n in sizes:
            a = torch.randn(n, n, generator=g, device=device).to(dt)
            b = torch.randn(n, n, generator=g, device=device).to(dt)
            out = torch.empty(n, n, device=device, dtype=dt)
            per_size[n] = _best(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), n, reps, sync,
                                spreads)
        op = f"torch.mm {backend.precision} {device.type}"
    elif backend.framework == "cupy":
        import cupy
        import numpy as np

        sync = cupy.cuda.Device().synchronize
        rng = np.random.default_rng(0)
        for n in QUICK_SIZES if quick else CUDA_SIZES:
            a = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
            b = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
            out = cupy.empty((n, n), dtype=np.float32)
            per_size[n] = _best(lambda a=a, b=b, out=out: cupy.matmul(a, b, out=out), n, reps,
                                sync, spreads)
        op = "cupy.matmul float32 cuda"
    else:
        raise ValueError(f"no matmul peak for framework {backend.framework!r}")
    n_best = max(per_size, key=per_size.get)
    return per_size[n_best], {
        "op": op, "precision": backend.precision, "reps": reps, "quick": quick,
        "per_size_gflops": {str(n): round(v, 2) for n, v in per_size.items()},
        "spread": round(spreads[n_best], 4)}
