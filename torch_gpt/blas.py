"""Which BLAS torch's CPU matmuls run on: the twin of numpy_gpt/nn/blas.py's numpy_blas.

    info = torch_blas()      # BlasInfo("torch", "MKL", "2024.2", threads=2, architecture="AVX512")

From torch's build information (torch.__config__.show(): BLAS_INFO=mkl | open | ..., MKL's
version line), its intra-op thread count, and the CPU capability ATen's kernels dispatch to
(torch.backends.cpu.get_cpu_capability(), which ATEN_CPU_CAPABILITY can lower). Where torch
uses an OpenBLAS that threadpoolctl sees in torch's folder, its kernel is OpenBLAS's core name
as for NumPy, and OPENBLAS_CORETYPE affects it the same way. The lines a header prints come
from numpy_gpt.nn.blas.blas_lines, with the torch-only variables (TORCH_FORCING_VARS) added
when they are set.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import torch

from numpy_gpt.nn.blas import BlasInfo, blas_lines, from_threadpool

# variables that change which CPU kernels torch's matmuls use
TORCH_FORCING_VARS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE")


def torch_blas(show: str | None = None) -> BlasInfo:
    """torch's CPU BLAS (`show`: torch.__config__.show()'s text, for tests)."""
    show = torch.__config__.show() if show is None else show
    info = re.search(r"BLAS_INFO=(\w+)", show)
    kind = info.group(1).lower() if info else "unknown"
    version = None
    if kind == "mkl":
        library = "MKL"
        m = re.search(r"Math Kernel Library Version ([\w.]+)", show)
        version = m.group(1) if m else None
    elif kind in ("open", "openblas"):
        library = "OpenBLAS"
        pool = _torch_openblas_pool()
        if pool is not None:
            return from_threadpool(pool, "torch")
    else:
        library = kind
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch < 2.1
        capability = None
    threading = "OpenMP" if "OpenMP" in torch.__config__.parallel_info() else None
    return BlasInfo("torch", library, version, torch.get_num_threads(), capability, threading)


def _torch_openblas_pool() -> dict | None:
    """threadpoolctl's entry for an OpenBLAS inside torch's own folder, if any."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    root = os.path.dirname(torch.__file__)
    for pool in threadpool_info():
        if pool.get("internal_api") == "openblas" and str(pool.get("filepath", "")).startswith(
                root):
            return pool
    return None


def torch_blas_lines(environ: Mapping[str, str] | None = None, command: str = "python -m ...",
                     threads: int | None = None) -> list[str]:
    """A header's lines for torch's BLAS (numpy_gpt.nn.blas.blas_lines, plus the torch-only
    forcing variables when set); `threads`: the run's thread count when it will set one."""
    environ = os.environ if environ is None else environ
    info = torch_blas()
    if threads is not None:
        info = dataclasses.replace(info, threads=threads)
    lines = blas_lines(info, environ, command=command)
    forced = [f"{k}={environ[k]}" for k in TORCH_FORCING_VARS if environ.get(k)]
    if forced:
        lines[0] += "; " + " ".join(forced) + " set"
    return lines
