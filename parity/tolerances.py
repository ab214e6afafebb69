"""The one table of parity tolerances (STYLE.md P2), keyed by (dtype, device).

Error of a compared tensor = max|a - b| / max(max|b|, 1e-30), b the NumPy reference
(DESIGN.md "Parity policy"). Categories:

    forward   logits, loss, a layer's output
    grad      every gradient (layer inputs and weights, model parameters)
    train     loss trajectory, grad norms and parameters after 10 AdamW steps
              (clipping, warmup+cosine schedule, 2-step gradient accumulation)
    kv_cache  KV-cache decode vs full recompute (cases to come with generation)

float64 and float32 compare the twins in the same dtype (CUDA with TF32 off). bfloat16 and
float16 mean torch.autocast with float32 master weights, compared with the float64 NumPy
reference; their bounds follow from the formats' unit roundoff (bf16 2^-8 = 3.9e-3, fp16
2^-11 = 4.9e-4) accumulated over a few layers, gradients looser than outputs. Those bounds
were calibrated with CPU autocast (presets tiny and small, seeds 0-2; worst seen: bf16
forward 5.0e-3, grad 2.5e-2; fp16 forward 8.9e-4, grad 4.2e-3), leaving a 4-7x margin, and
are applied unchanged on CUDA, where they have not been measured yet.
Autocast runs only forward and gradient cases: AdamW's normalised update m/sqrt(v) turns
half-precision noise in tiny gradients into full-size steps, so a 10-step parameter
comparison at bf16 says nothing useful.
"""

from __future__ import annotations

from typing import NamedTuple

CATEGORIES = ("forward", "grad", "train", "kv_cache")


class Tolerance(NamedTuple):
    forward: float
    grad: float
    train: float
    kv_cache: float


_FLOAT64 = Tolerance(forward=1e-12, grad=1e-10, train=1e-10, kv_cache=1e-12)
_FLOAT32 = Tolerance(forward=1e-5, grad=1e-4, train=1e-4, kv_cache=1e-5)
_BFLOAT16 = Tolerance(forward=3e-2, grad=1e-1, train=float("nan"), kv_cache=3e-2)
_FLOAT16 = Tolerance(forward=5e-3, grad=3e-2, train=float("nan"), kv_cache=5e-3)

TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "cpu"): _FLOAT64,
    ("float64", "cuda"): _FLOAT64,
    ("float32", "cpu"): _FLOAT32,
    ("float32", "cuda"): _FLOAT32,  # TF32 off
    ("bfloat16", "cpu"): _BFLOAT16,  # autocast vs the float64 reference
    ("bfloat16", "cuda"): _BFLOAT16,
    ("float16", "cpu"): _FLOAT16,
    ("float16", "cuda"): _FLOAT16,
}

AUTOCAST_DTYPES = ("bfloat16", "float16")


def tolerance(dtype: str, device: str, category: str) -> float:
    """The bound for one (dtype, device, category); KeyError names what is missing."""
    device = device.split(":")[0]  # "cuda:1" -> "cuda"
    if (dtype, device) not in TOLERANCES:
        raise KeyError(f"no parity tolerances for dtype {dtype!r} on device {device!r}")
    if category not in CATEGORIES:
        raise KeyError(f"unknown parity category {category!r}; one of {CATEGORIES}")
    return getattr(TOLERANCES[dtype, device], category)
