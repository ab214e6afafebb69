"""The header of a benchmark run: what the numbers depend on (STYLE.md B2).

CPU model and core count, threads, the BLAS libraries (NumPy's from threadpoolctl, via
numpy_gpt.nn.blas: library, version, kernel, threads; torch's from torch.__config__, via
torch_gpt.blas), the kernel-forcing variables when set (OPENBLAS_CORETYPE, ...) and a note
when NumPy's kernel is forced older than the CPU, versions, GPU name and TF32 defaults, load
average before and after, the git commit, and the machine id that names
bench/results/<machine-id>.json. Also ForeignCpu: how much of the machine other processes
used during a measurement (the machine is shared: that, not the load average, which counts
the bench's own threads too, says whether timings were disturbed).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from numpy_gpt.training.machine_load import MIN_WALL_S, cpu_model, loadavg, machine_cpu_seconds
from numpy_gpt.training.machine_load import cores as cpu_cores

ROOT = Path(__file__).resolve().parents[1]




def blas_info(threads: int, command: str = "python -m bench ...",
              environ: dict[str, str] | None = None, cpuinfo: str | None = None,
              numpy_pools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The env keys naming both BLAS libraries (`environ`, `cpuinfo`, `numpy_pools`: the
    environment, /proc/cpuinfo's text and threadpoolctl's threadpool_info(), for tests).

    numpy_blas / torch_blas: one line each, e.g. "OpenBLAS 0.3.31 (SkylakeX kernel, 2
    threads, pthreads)", with the thread count the workers run (--threads: set in their
    environment before NumPy loads); *_blas_info: the same as fields; blas_env: the forcing
    variables that are set; blas_notes: the older-kernel note, if any (with `command` as
    the native re-run); blas_kernel_tag: "openblas-haswell" when OPENBLAS_CORETYPE forces
    the kernel (it goes into the machine id, so a forced run's results file says so)."""
    from numpy_gpt.nn.blas import (
        FORCING_VARS,
        cpu_flags,
        cpu_level,
        kernel_tag,
        numpy_blas,
        older_kernel_note,
    )

    environ = dict(os.environ) if environ is None else environ
    flags = cpu_flags(cpuinfo)
    infos = [dataclasses.replace(numpy_blas(numpy_pools), threads=threads)]
    try:
        from torch_gpt.blas import TORCH_FORCING_VARS, torch_blas

        infos.append(dataclasses.replace(torch_blas(), threads=threads))
    except ImportError:  # no torch: its rows are skipped, and so is its BLAS
        TORCH_FORCING_VARS = ()
    out: dict[str, Any] = {"numpy_blas": None, "torch_blas": None}
    for info in infos:
        out[f"{info.owner}_blas"] = info.describe()
        out[f"{info.owner}_blas_info"] = info.as_dict()
    out["blas_env"] = {k: environ[k] for k in (*FORCING_VARS, *TORCH_FORCING_VARS)
                       if environ.get(k)}
    out["cpu_isa_level"] = cpu_level(flags)
    out["blas_notes"] = [n for n in (older_kernel_note(i, flags, environ, command)
                                     for i in infos) if n]
    out["blas_kernel_tag"] = kernel_tag(infos[0], environ)
    return out


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
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


# (busy, steal) CPU-seconds of the whole machine since boot, from /proc/stat: the runner
# differences two readings around a measurement and subtracts its own processes' CPU time;
# what remains is other processes' (and the hypervisor's) use of the machine
cpu_times = machine_cpu_seconds


class ForeignCpu:
    """How much of the machine other processes used while one worker ran.

    foreign = machine busy CPU-seconds (/proc/stat) - this process's and the worker's own
    (getrusage), as a fraction of wall time x cores. 0 on a quiet machine; 0.5 means other
    processes had half the machine on average (timings are then not to be trusted). None
    over an interval too short for /proc/stat's ticks to tell (machine_load.MIN_WALL_S).
    """

    def __init__(self) -> None:
        self.t0, self.cpu0, self.own0 = time.perf_counter(), cpu_times(), self._own()

    @staticmethod
    def _own() -> float:
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    def foreign(self) -> tuple[float | None, float | None]:
        cpu1 = cpu_times()
        wall = time.perf_counter() - self.t0
        if self.cpu0 is None or cpu1 is None or wall < MIN_WALL_S:
            return None, None
        capacity = wall * cpu_cores()
        busy, steal = cpu1[0] - self.cpu0[0], cpu1[1] - self.cpu0[1]
        other = max(busy - (self._own() - self.own0), 0.0)  # tick rounding: clamp to [0, 1]
        return round(min(other / capacity, 1.0), 3), round(min(steal / capacity, 1.0), 3)


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_id(env: dict[str, Any]) -> str:
    """e.g. "amd-epyc-2c" or "amd-epyc-16c-nvidia-h100-80gb-hbm3": CPU model, cores, GPU;
    plus the kernel when OPENBLAS_CORETYPE forces it ("intel-xeon-...-2c-openblas-haswell"),
    so a forced run's results never stand in for the native ones."""
    parts = [env["cpu_model"], f"{env['cpu_cores']}c"]
    if env.get("gpu"):
        parts.append(env["gpu"])
    if env.get("blas_kernel_tag"):
        parts.append(env["blas_kernel_tag"])
    return slugify(" ".join(parts))


def env_info(threads: int, command: str = "python -m bench ...") -> dict[str, Any]:
    """The header's facts; `command` is this run's command line (the older-kernel note's
    native re-run prefixes it)."""
    env = {
        "cpu_model": cpu_model(),
        "cpu_cores": cpu_cores(),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        **torch_info(),
        **blas_info(threads, command),
        "malloc": "glibc tuned by numpy_gpt.nn.runtime.keep_freed_memory() in every worker",
        "git_commit": git_commit(),
        "loadavg_start": loadavg(),
    }
    env["machine_id"] = machine_id(env)
    return env
