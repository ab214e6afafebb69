"""Devices and numeric precision: device choice, TF32, bf16/fp16 autocast, torch.compile.

    device = resolve_device("auto")                 # cuda, else mps, else cpu
    scaler = grad_scaler(device, "float16")         # a no-op unless fp16 on CUDA
    with autocast(device, "bfloat16"):              # parameters stay float32
        logits, loss = model(idx, targets)
    scaler.scale(loss).backward()

Mixed precision keeps float32 master weights and runs matmuls in bf16/fp16 under
torch.autocast; fp16 needs loss scaling (GradScaler) against underflowing gradients, bf16
does not (it has float32's exponent range). TF32 is off unless asked for: it changes float32
matmul results by ~1e-3 and would break parity (STYLE.md P7).

Ref: PyTorch AMP docs (torch.amp); nanoGPT train.py (ctx, scaler, compile).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig

from .model import GPT

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps if available, else cpu. Unavailable -> error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("device 'mps' requested but MPS is not available")
    return device


def autocast(
    device: str | torch.device, dtype: str | None
) -> contextlib.AbstractContextManager:
    """torch.autocast for 'bfloat16' / 'float16', a null context for None or float32/64."""
    if dtype is None or dtype in ("float32", "float64"):
        return contextlib.nullcontext()
    if dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast dtype must be one of {tuple(AUTOCAST_DTYPES)}, got {dtype!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=AUTOCAST_DTYPES[dtype])


def grad_scaler(device: str | torch.device, dtype: str | None) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for float16 autocast on CUDA (else a pass-through)."""
    device_type = torch.device(device).type
    enabled = dtype == "float16" and device_type == "cuda"
    return torch.amp.GradScaler(device_type if enabled else "cpu", enabled=enabled)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set TF32 for CUDA matmuls and cuDNN inside the block, restoring the old flags after."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile(model) when enabled (the compiled module shares the parameters)."""
    return torch.compile(model) if enabled else model


def autocast_slowdown(config: GPTConfig, dtype: str, batch_size: int,
                      device: str | torch.device = "cpu",
                      repeats: int = 2) -> float:
    """How many times longer a forward+backward of a `config` GPT takes under `dtype` autocast
    than in float32 on `device`: best of `repeats` after a warm-up, on a seeded throwaway model
    in eval mode (no dropout, so the global RNG is untouched). On CPUs without fast bf16/fp16
    kernels autocast is several times slower (fp16 often tens of times); the train command
    warns with this figure."""

    model = GPT(config, device=device).eval()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, config.vocab_size, (batch_size, config.block_size), generator=gen)
    idx = idx.to(device)

    def timed(half: str | None) -> float:
        t0 = time.perf_counter()
        with autocast(device, half):
            _, loss = model(idx, idx)
        loss.backward()
        float(loss.detach())  # waits for the device
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    timed(None), timed(dtype)  # warm-up: first calls pay for allocation and kernel choice
    full = min(timed(None) for _ in range(repeats))
    return min(timed(dtype) for _ in range(repeats)) / max(full, 1e-9)
