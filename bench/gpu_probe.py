"""The machine step of `python -m bench.gpu_check`: GPU, driver, versions, peaks, bandwidth.

    info = probe(dry=False)   # run as its own step: python -m bench.gpu_check --probe PATH

What the results are read against, measured with bench's own code so the figures are the
ones MFU and MBU divide by: the matmul peaks by bench/peak.py (torch.mm in fp32, TF32 and
bf16, cupy.matmul in f32), the memory bandwidth by bench/bandwidth.py (a copy and a read of a
1 GiB buffer with torch on CUDA), plus nvidia-smi's line and the package versions. A missing
package is recorded, not raised: the rows that need it skip. The dry run measures the CPU's
torch.mm and the fake CuPy at the quick size instead, to prove the code path only.

Deliberately omits: the CPU's own description (bench/env.py, in every results header); clocks
or power over time (nvidia-smi's one line names the part and its limits).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any


def probe(dry: bool) -> dict[str, Any]:
    """The machine: GPU, driver, versions, matmul peaks, memory bandwidth.

    Peaks reuse bench.peak (the same measurement MFU divides by); the dry run measures the
    CPU's torch.mm and the fake CuPy at n=512 instead, to prove the code path only."""
    from .backends import BACKENDS, unavailable_reason
    from .peak import matmul_peak

    info: dict[str, Any] = {"python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, ("--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                            "power.limit"), "--format=csv,noheader"],
                           check=False, capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    for mod in ("numpy", "torch", "cupy", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 -- recorded, the rows that need it skip
            info[mod] = f"unavailable: {type(e).__name__}: {e}"
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                           "memory_gib": round(p.total_memory / 2**30, 1),
                           "sms": p.multi_processor_count}
            info["cudnn"] = torch.backends.cudnn.version()
    except ImportError:
        pass
    peaks = {}
    names = (["torch-cpu", "cupy-f32"] if dry else
             ["torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-bf16", "cupy-f32"])
    for name in names:
        reason = unavailable_reason(BACKENDS[name])
        if reason:
            peaks[name] = {"skipped": reason}
            continue
        gflops, detail = matmul_peak(BACKENDS[name], quick=dry)
        peaks[name] = {"gflops": round(gflops, 1), **detail}
    info["matmul_peaks"] = peaks
    info["memory_bandwidth"] = device_bandwidth(dry)
    return info


def device_bandwidth(dry: bool) -> dict[str, Any]:
    """The device's memory bandwidth as bench measures it for MBU (bench/bandwidth.py: a copy
    and a read of a 1 GiB buffer with torch on CUDA); the dry run: the CPU at --quick size."""
    from .backends import BACKENDS, unavailable_reason
    from .bandwidth import memory_bandwidth

    backend = BACKENDS["torch-cpu" if dry else "torch-cuda-fp32"]
    reason = unavailable_reason(backend)
    if reason:
        return {"skipped": reason}
    from .env import cpu_cores

    gbps, detail = memory_bandwidth(backend, threads=1 if dry else cpu_cores(), quick=dry)
    return {"gb_per_s": round(gbps, 1), **detail}
