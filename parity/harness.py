"""The parity harness: compare one tensor, collect rows, print the report.

    row = compare("model/tied", "logits", a, b, "float64", "cpu", tol=1e-12)
    error = max|a - b| / max(max|b|, 1e-30)          b is the reference (numpy_gpt)

A case gets a Context: what to compare in (dtype, device), the sizes, a seeded RNG, and
`ctx.check(name, a, b, category)`, which looks the bound up in tolerances.py and records a
Row. Library code never prints; `print_report` is called by the command line.

Ref: llm.c test_gpt2.c check_tensor (max abs diff per tensor, non-zero exit on failure).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np
import torch

from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.device import to_numpy as host_array
from torch_gpt.precision import autocast

from .tolerances import AUTOCAST_DTYPES, CATEGORIES, tolerance


@dataclass
class Row:
    """One compared tensor."""

    case: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    max_abs: float  # max |a - b|
    error: float  # max_abs / max(max |b|, 1e-30)
    tol: float
    ok: bool
    category: str = "forward"
    note: str = ""  # why a row failed without a comparison (shape mismatch, exception)

    def as_json(self) -> dict[str, Any]:
        """A strict-JSON dict: non-finite numbers become null (the note says why)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        for k in ("max_abs", "error", "tol"):
            if not math.isfinite(d[k]):
                d[k] = None
        return d


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor, NumPy or CuPy array, or Python number as a float64 NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(host_array(x), dtype=np.float64)


def compare(
    case: str,
    name: str,
    a: Any,
    b: Any,
    dtype: str,
    device: str,
    tol: float,
    *,
    category: str = "forward",
) -> Row:
    """Row for `a` (the twin under test) against `b` (the reference); NaN anywhere fails."""
    a, b = to_numpy(a), to_numpy(b)
    if a.shape != b.shape:
        return Row(case, name, tuple(b.shape), dtype, device, math.inf, math.inf, tol, False,
                   category, note=f"shape {a.shape} != reference shape {b.shape}")
    if a.size == 0:
        return Row(case, name, a.shape, dtype, device, 0.0, 0.0, tol, True, category)
    max_abs = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(b))), 1e-30)
    error = max_abs / scale
    ok = bool(error <= tol)  # False for NaN error or NaN tol
    if np.isnan(b).any() or np.isnan(a).any():
        ok, error = False, math.nan
    return Row(case, name, tuple(a.shape), dtype, device, max_abs, error, tol, ok, category)


@dataclass
class Context:
    """Everything a case needs to run in one (dtype, device) and record its rows.

    dtype float64/float32: both twins run in it. bfloat16/float16: torch runs float32
    weights under autocast, numpy_gpt is the float64 reference. `fault` names a parameter
    whose torch gradient is planted wrong (x 1.001), to prove that failures are caught.
    numpy_device "cuda": numpy_gpt runs on CuPy (the cases marked cupy=True), so both twins
    are on the GPU; "cpu" otherwise.
    """

    dtype: str
    device: str
    config: GPTConfig
    batch_size: int
    seq_len: int
    seed: int = 0
    fault: str | None = None
    case: str = ""
    numpy_device: str = "cpu"
    rows: list[Row] = field(default_factory=list)

    @property
    def is_autocast(self) -> bool:
        return self.dtype in AUTOCAST_DTYPES

    @property
    def ref_dtype(self) -> str:
        """numpy_gpt's dtype: the float64 reference for autocast runs."""
        return "float64" if self.is_autocast else self.dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        """torch_gpt's parameter dtype (float32 master weights under autocast)."""
        return torch.float32 if self.dtype in ("float32", *AUTOCAST_DTYPES) else torch.float64

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype if self.is_autocast else None)

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A fresh Generator per case, so one case's draws do not shift another's."""
        return np.random.default_rng([self.seed, salt, sum(map(ord, self.case))])

    def tensor(self, x: np.ndarray, *, requires_grad: bool = False) -> torch.Tensor:
        """An array as a torch leaf on device: floats in torch_dtype, ints int64, bools bool."""
        t = torch.from_numpy(np.array(x, copy=True))
        if t.is_floating_point():
            t = t.to(self.torch_dtype)
        elif t.dtype != torch.bool:
            t = t.long()
        return t.to(self.device).requires_grad_(requires_grad)

    def check(self, name: str, a: Any, b: Any, category: str) -> Row:
        row = compare(self.case, name, a, b, self.dtype, self.device,
                      tolerance(self.dtype, self.device, category), category=category)
        self.rows.append(row)
        return row

    def fail(self, name: str, note: str, category: str = "forward") -> Row:
        """Record a failure that is not a comparison (e.g. an exception in a case)."""
        row = Row(self.case, name, (), self.dtype, self.device, math.inf, math.inf,
                  tolerance(self.dtype, self.device, category), False, category, note)
        self.rows.append(row)
        return row

    def plant_fault(self, model: torch.nn.Module) -> None:
        """If `fault` names one of model's parameters, scale its gradient by 1.001."""
        for name, p in model.named_parameters():
            if name == self.fault:
                p.register_hook(lambda g: g * 1.001)


# ---------------------------------------------------------------------- report


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    """Worst row per (dtype, device, category), in a stable order."""
    worst: dict[tuple[str, str, str], Row] = {}
    for r in rows:
        key = (r.dtype, r.device, r.category)
        if key not in worst or _badness(r) > _badness(worst[key]):
            worst[key] = r
    order = {c: i for i, c in enumerate(CATEGORIES)}
    out = []
    for (dtype, device, cat), r in sorted(worst.items(),
                                          key=lambda kv: (kv[0][1], kv[0][0], order[kv[0][2]])):
        n = sum(1 for x in rows if (x.dtype, x.device, x.category) == (dtype, device, cat))
        failed = sum(1 for x in rows if (x.dtype, x.device, x.category) == (dtype, device, cat)
                     and not x.ok)
        out.append({"dtype": dtype, "device": device, "category": cat, "rows": n,
                    "failed": failed, "worst_error": r.error, "tol": r.tol,
                    "worst": f"{r.case} {r.name}"})
    return out


def _badness(r: Row) -> tuple[bool, float]:
    """Failed rows first, then the larger error (NaN counts as infinite)."""
    return (not r.ok, math.inf if math.isnan(r.error) else r.error)


def format_row(r: Row) -> str:
    status = "OK  " if r.ok else "FAIL"
    shape = "x".join(map(str, r.shape)) or "scalar"
    line = (f"{status} {r.dtype:<8} {r.device:<4} {r.case:<34} {r.name:<44} {shape:>10} "
            f"max_abs {r.max_abs:9.2e}  err {r.error:9.2e}  tol {r.tol:7.0e}")
    return line + (f"  ({r.note})" if r.note else "")


def print_report(rows: list[Row], *, file: TextIO | None = None, failures_only: bool = False
                 ) -> None:
    """One line per tensor, then the worst error per category and OK/FAIL."""
    file = file or sys.stdout
    for r in rows:
        if r.ok and failures_only:
            continue
        print(format_row(r), file=file)
    print("\nsummary: worst normalized error per category", file=file)
    for s in summarize(rows):
        status = "OK  " if s["failed"] == 0 else "FAIL"
        print(f"{status} {s['dtype']:<8} {s['device']:<4} {s['category']:<8} "
              f"worst {s['worst_error']:9.2e} (tol {s['tol']:7.0e})  "
              f"{s['rows']:4d} rows, {s['failed']} failed   [{s['worst']}]", file=file)
    failed = sum(not r.ok for r in rows)
    verdict = "OK" if failed == 0 and rows else "FAIL"
    print(f"\n{verdict}: {len(rows)} tensors compared, {failed} failed", file=file)


def env_info() -> dict[str, Any]:
    """What the numbers depend on: versions, threads, device, TF32."""
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """TF32 off for the block (STYLE.md P7); a no-op without CUDA."""
    from torch_gpt.precision import tf32

    with tf32(False):
        yield
