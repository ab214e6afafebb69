"""The backends a benchmark can run on, and why one is unavailable here.

    for b in select_backends(["numpy-f32", "torch-cpu"]):
        reason = unavailable_reason(b, quick=False)      # None when it can run

A backend is one (framework, device, precision, compiled?) combination. Its `check_dtype`
names the row of parity/tolerances.py its B1 correctness check uses against the numpy_gpt
float64 reference; its `peak_key` names the matmul whose measured throughput is its MFU
denominator (same framework, device and precision, measured in the same run), its
`bandwidth_key` the memory bandwidth its decoding rows' MBU is set against.

TF32 has no row of its own in the tolerances table: its 10-bit mantissa is float16's, so it
is checked with the float16 bound (5e-3 on logits), which is looser than anything TF32's
float32-accumulated matmuls produce. bf16 autocast uses the bfloat16 bound.

This module never imports torch at import time: the NumPy workers must stay torch-free.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    framework: str  # "numpy" | "torch" | "cupy"
    device: str  # "cpu" | "cuda"
    dtype: str  # parameter dtype: "float32" | "float64"
    precision: str  # what the matmuls run in: float32 | float64 | tf32 | bfloat16
    check_dtype: str  # tolerance row (parity.tolerances) for the B1 check
    compile: bool = False  # torch.compile
    flash: bool = False  # force SDPA's flash-attention kernel
    note: str = ""

    @property
    def peak_key(self) -> str:
        """Backends sharing a key share one measured matmul peak."""
        return f"{self.framework}-{self.device}-{self.precision}"

    @property
    def bandwidth_key(self) -> str:
        """Backends sharing a key share one measured memory bandwidth (bench/bandwidth.py):
        one per framework and device, whatever the precision."""
        return f"{self.framework}-{self.device}-bandwidth"

    @property
    def weight_bytes(self) -> int:
        """Bytes per stored parameter (the dtype; float32 master weights under autocast)."""
        return {"float32": 4, "float64": 8}[self.dtype]

    @property
    def kv_bytes(self) -> int:
        """Bytes per cached key/value element: the matmuls' output dtype (bf16 under
        autocast: the q/k/v projection returns bfloat16), else the parameter dtype."""
        return 2 if self.precision == "bfloat16" else self.weight_bytes

    @property
    def autocast(self) -> str | None:
        return "bfloat16" if self.precision == "bfloat16" else None


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("numpy-f32", "numpy", "cpu", "float32", "float32", "float32",
            note="numpy_gpt, hand-written backward, OpenBLAS"),
    Backend("numpy-f64", "numpy", "cpu", "float64", "float64", "float64",
            note="numpy_gpt in float64 (the parity reference's dtype)"),
    Backend("torch-cpu", "torch", "cpu", "float32", "float32", "float32",
            note="torch_gpt eager, SDPA attention"),
    Backend("torch-cpu-compile", "torch", "cpu", "float32", "float32", "float32", compile=True,
            note="torch_gpt under torch.compile (inductor, C++ codegen)"),
    Backend("torch-cuda-fp32", "torch", "cuda", "float32", "float32", "float32",
            note="CUDA float32, TF32 off"),
    Backend("torch-cuda-tf32", "torch", "cuda", "float32", "tf32", "float16",
            note="CUDA float32 storage, TF32 matmuls (checked with the float16 bound)"),
    Backend("torch-cuda-bf16", "torch", "cuda", "float32", "bfloat16", "bfloat16",
            note="CUDA bf16 autocast, float32 master weights"),
    Backend("torch-cuda-compile", "torch", "cuda", "float32", "bfloat16", "bfloat16",
            compile=True, flash=True, note="bf16 autocast + torch.compile + SDPA flash"),
    Backend("cupy-f32", "cupy", "cuda", "float32", "float32", "float32",
            note="numpy_gpt's array code on CuPy"),
]}
DEFAULT_BACKENDS = tuple(BACKENDS)
QUICK_SKIPPED = ("torch-cpu-compile", "torch-cuda-compile")


def select_backends(names: list[str] | None) -> list[Backend]:
    """Backends by name, in the registry's order; None means all. Unknown names raise."""
    if names is None:
        return list(BACKENDS.values())
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    return [b for b in BACKENDS.values() if b.name in names]


def _torch_cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch not installed"
    import torch

    if not torch.cuda.is_available():
        build = (f"CUDA {torch.version.cuda} build" if torch.version.cuda
                 else "a CPU-only build")
        return f"no CUDA device (torch.cuda.is_available() is False; torch {torch.__version__} " \
               f"is {build})"
    return None


def unavailable_reason(backend: Backend, quick: bool = False) -> str | None:
    """Why `backend` cannot run in this process's environment, or None if it can.

    Checked in the parent. A compile backend may still be skipped later, by its worker, when
    torch.compile itself fails here; that reason then comes from the compiler's error.
    """
    reason = _environment_reason(backend)
    if reason is None and quick and backend.name in QUICK_SKIPPED:
        return "not run with --quick (torch.compile takes tens of seconds); run without --quick"
    return reason


def _environment_reason(backend: Backend) -> str | None:
    if backend.framework == "numpy":
        return None
    if backend.framework == "cupy":
        if importlib.util.find_spec("cupy") is None:
            return "cupy not installed (pip install cupy-cuda12x)"
        import cupy

        if not cupy.is_available():
            return "no CUDA device (cupy.is_available() is False)"
        return None
    if importlib.util.find_spec("torch") is None:
        return "torch not installed"
    if backend.device == "cuda":
        reason = _torch_cuda_reason()
        if reason:
            return reason
        import torch

        if backend.precision == "bfloat16" and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(0)} does not support bfloat16"
        if backend.flash and torch.cuda.get_device_capability(0) < (8, 0):
            return f"flash attention needs compute capability >= 8.0, " \
                   f"{torch.cuda.get_device_name(0)} has {torch.cuda.get_device_capability(0)}"
    return None
