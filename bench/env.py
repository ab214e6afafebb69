"""The header of a benchmark run: what the numbers depend on (STYLE.md B2).

CPU model and core count, threads, BLAS libraries (NumPy's from numpy.show_config, torch's
from torch.__config__), versions, GPU name and TF32 defaults, load average before and after
(the machine is shared: a high load means noisy timings), and the git commit. Also the
machine id that names bench/results/<machine-id>.json.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def numpy_blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name', '?')} {cfg.get('version', '?')}"
    except Exception:  # noqa: BLE001 -- older NumPy: no dict mode
        return "unknown"


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    show = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", show)
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "torch_blas": blas.group(1) if blas else "unknown",
        "torch_cuda_build": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "tf32_matmul_default": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn_default": torch.backends.cudnn.allow_tf32,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "numpy_gpt", "torch_gpt",
                                "bench"], check=False, cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_times() -> tuple[float, float] | None:
    """(busy, steal) CPU-seconds of the whole machine since boot, from /proc/stat.

    busy = user + nice + system + irq + softirq + steal (guest time is inside user). The
    runner differences two readings around a measurement and subtracts its own processes'
    CPU time: what remains is other processes' (and the hypervisor's) use of the machine.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_id(env: dict[str, Any]) -> str:
    """e.g. "amd-epyc-2c" or "amd-epyc-16c-nvidia-h100-80gb-hbm3": CPU model, cores, GPU."""
    parts = [env["cpu_model"], f"{env['cpu_cores']}c"]
    if env.get("gpu"):
        parts.append(env["gpu"])
    return slugify(" ".join(parts))


def env_info(threads: int) -> dict[str, Any]:
    env = {
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_cores(),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        **torch_info(),
        "malloc": "glibc tuned by numpy_gpt.nn.runtime.keep_freed_memory() in every worker",
        "git_commit": git_commit(),
        "loadavg_start": loadavg(),
    }
    env["machine_id"] = machine_id(env)
    return env
