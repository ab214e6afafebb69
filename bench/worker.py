"""Measurements in a fresh process: `python -m bench.worker`, driven by bench/runner.py.

Protocol (one JSON object per line; the worker's other stdout lines are ignored):
    parent -> stdin    the job: {"backend", "size", "workloads": [...], "warmup", "iters",
                       "gen_warmup", "gen_iters", "seed", "threads", "quick", "check",
                       "fault", "peak", "bandwidth", "tmpdir"}
    worker -> stdout   @@bench {"kind": "check", "path": ..., "loss": ...}   (if "check")
    parent -> stdin    "go" or "stop"     (the parent compared the logits: STYLE.md B1)
    worker -> stdout   @@bench {"kind": "result", "workload": ..., ...}   one per workload
    worker -> stdout   @@bench {"kind": "peak", ...}                      (if "peak")
    worker -> stdout   @@bench {"kind": "bandwidth", ...}                 (if "bandwidth")

Why a fresh process per (backend, size): peak memory is a per-process high-water mark;
torch's and OpenBLAS's thread pools start from the requested thread count; and no state
(TF32 flags, compiled graphs, allocator caches) leaks from one backend into the next. The
parent, not the worker, runs the B1 comparison with parity.harness.compare (which imports
torch), so NumPy workers never load torch.

Order: keep_freed_memory() (numpy_gpt.nn.runtime, once, before anything else allocates), build
the model and inputs, the check forward, then per workload: drop the previous workload's
state, gc + malloc_trim, reset the high-water mark, warm up, time. Each workload's peak
memory is therefore its own growth over the model at rest (the check forward's activations
are freed before the first workload). The matmul peak and the memory bandwidth, when asked
for, run last. Every result names the BLAS the worker's matmuls ran on (`blas`: numpy's or
torch's library, version, kernel and threads as loaded in this process; None on CUDA).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from numpy_gpt.nn.runtime import keep_freed_memory

PREFIX = "@@bench "


def send(kind: str, **payload: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps({"kind": kind, **payload}) + "\n")
    sys.stdout.flush()


def make_adapter(backend: Any, size: Any, spec: dict[str, Any]) -> Any:
    if backend.framework in ("numpy", "cupy"):  # cupy: numpy_gpt on device "cuda"
        from .numpy_adapter import NumpyAdapter

        return NumpyAdapter(backend, size, seed=spec["seed"], fault=spec["fault"],
                            threads=spec["threads"])
    if backend.framework == "torch":
        from .torch_adapter import TorchAdapter

        return TorchAdapter(backend, size, seed=spec["seed"], fault=spec["fault"],
                            threads=spec["threads"])
    raise ValueError(f"no adapter for framework {backend.framework!r}")


def _is_compile_error(backend: Any, e: BaseException) -> bool:
    """An exception from torch.compile's machinery (dynamo/inductor) in a compile backend."""
    if not backend.compile:
        return False
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "inductor" in str(e).lower()


def _error(backend: Any, e: BaseException) -> dict[str, Any]:
    traceback.print_exc()
    msg = (str(e).strip().splitlines() or [""])[0][:300]
    if _is_compile_error(backend, e):
        return {"status": "skipped", "reason": f"torch.compile failed here: "
                                               f"{type(e).__name__}: {msg}"}
    return {"status": "error", "reason": f"{type(e).__name__}: {msg}"}


def measure_workload(adapter: Any, workload: str, spec: dict[str, Any]) -> dict[str, Any]:
    from .flops import GEN_WORKLOADS
    from .memory import PeakTracker
    from .timing import time_steps

    gen = workload in GEN_WORKLOADS
    warmup = spec["gen_warmup"] if gen else spec["warmup"]
    iters = spec["gen_iters"] if gen else spec["iters"]
    tracker = PeakTracker()
    tracker.start()  # gc + malloc_trim, then reset the high-water mark
    adapter.device_mem_start()
    step = adapter.step(workload)
    t = time_steps(step, warmup, iters, adapter.sync)
    host_peak, device_peak = tracker.growth_mb(), adapter.device_peak_mb()
    del step  # the optimizer state goes with it
    adapter.release()  # e.g. torch's .grad tensors, so the next workload starts clean
    out = {"status": "ok", "times_ms": t.times_ms, "ms_median": t.median_ms,
           "ms_min": t.min_ms, "ms_mean": t.mean_ms, "first_call_ms": t.first_ms,
           "warmup": warmup, "iters": iters,
           "host_rss_peak_mb": host_peak, "rss_base_mb": tracker.base_mb,
           "mem_method": tracker.method, "device_peak_mb": device_peak}
    if gen:
        out.update(adapter.generation_shape(workload))
    return out


def run(spec: dict[str, Any]) -> None:
    import numpy as np

    from .backends import BACKENDS
    from .sizes import get_size

    backend = BACKENDS[spec["backend"]]
    size = get_size(spec["size"], quick=spec["quick"]).for_device(backend.device)
    try:
        adapter = make_adapter(backend, size, spec)
        params_mb = adapter.params_mb()
        if spec["check"]:
            logits, loss = adapter.check()
            path = f"{spec['tmpdir']}/logits.npy"
            np.save(path, logits)
            del logits
            send("check", path=path, loss=loss)
            if sys.stdin.readline().strip() != "go":
                for w in spec["workloads"]:
                    send("result", workload=w, status="failed", reason="B1 check failed")
                return
    except Exception as e:  # noqa: BLE001 -- every workload of this job reports it
        err = _error(backend, e)
        for w in spec["workloads"]:
            send("result", workload=w, **err)
        return
    blas = worker_blas(backend)
    for w in spec["workloads"]:
        try:
            res = measure_workload(adapter, w, spec)
        except Exception as e:  # noqa: BLE001 -- one workload's failure spares the others
            res = _error(backend, e)
        send("result", workload=w, params_mb=params_mb, blas=blas, **res)
    del adapter
    if spec.get("peak"):
        send("peak", **run_peak(backend, spec))
    if spec.get("bandwidth"):
        send("bandwidth", **run_bandwidth(backend, spec))


def worker_blas(backend: Any) -> str | None:
    """The BLAS this worker's CPU matmuls run on, as loaded here (its thread count is the
    bench's --threads: OPENBLAS/MKL/OMP_NUM_THREADS were set before NumPy loaded)."""
    if backend.device != "cpu":
        return None
    try:
        if backend.framework == "torch":
            from torch_gpt.blas import torch_blas

            return torch_blas().describe()
        from numpy_gpt.nn.blas import numpy_blas

        return numpy_blas().describe()
    except Exception as e:  # noqa: BLE001 -- a description must not lose the figures
        return f"unknown ({type(e).__name__}: {e})"[:200]


def run_peak(backend: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from .memory import settle
    from .peak import matmul_peak

    settle()
    try:
        if backend.framework == "torch" and spec["threads"]:
            import torch

            torch.set_num_threads(spec["threads"])
        gflops, detail = matmul_peak(backend, quick=spec["quick"])
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"[:300]}
    return {"status": "ok", "gflops": gflops, **detail}


def run_bandwidth(backend: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from .bandwidth import memory_bandwidth
    from .memory import settle

    settle()
    try:
        gbps, detail = memory_bandwidth(backend, spec["threads"], quick=spec["quick"])
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"[:300]}
    return {"status": "ok", "gbps": gbps, **detail}


def main() -> int:
    keep_freed_memory()  # once per process, before anything big is allocated (all backends)
    run(json.loads(sys.stdin.readline()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
