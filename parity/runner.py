"""Run the registered parity cases over (dtype, device) pairs and collect their rows.

    rows = run(plan(None, None), *PRESETS["tiny"])       # what `python -m parity` does
    ok = all(r.ok for r in rows)

Presets are the model sizes a run compares at: "tiny" (the default, every size different
and small: B=2, T=3, C=8, NH=2, V=11), "small", and "baby" (nanoGPT's CPU config), and their
Llama-shaped counterparts "llama-tiny" (C=16, NH=4 query / KV=2 key-value heads, hs=4, SwiGLU
F=24, RoPE halves) and "llama-small" (multi-query, KV=1, RoPE interleaved).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from numpy_gpt.nn.config import ConfigError, GPTConfig, arch_fields
from numpy_gpt.nn.device import DeviceError, array_module

from .cases import Case, select
from .harness import Context, Row, no_tf32
from .tolerances import AUTOCAST_DTYPES

DTYPES = ("float64", "float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")


PRESETS: dict[str, tuple[GPTConfig, int, int]] = {
    "tiny": (GPTConfig(vocab_size=11, block_size=4, n_layer=2, n_head=2, n_embd=8), 2, 3),
    "small": (GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32), 4, 16),
    "baby": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 4, 64),
    "llama-tiny": (GPTConfig(vocab_size=11, block_size=4, n_layer=2, n_head=4, n_embd=16,
                             **arch_fields("llama", 4) | {"ffn_hidden": 24}), 2, 3),
    "llama-small": (GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32,
                              **arch_fields("llama", 4) | {"n_kv_head": 1,
                                                           "rope_layout": "interleaved"}),
                    4, 16),
}


def parse_setup(spec: str) -> tuple[GPTConfig, int, int]:
    """A preset name, a JSON object, or a path to a JSON file -> (config, B, T).

    The JSON holds GPTConfig fields plus optional "batch_size" (default 2) and "seq_len"
    (default block_size). Raises ValueError with a one-line message.
    """
    if spec in PRESETS:
        return PRESETS[spec]
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"--config {spec!r} is neither a preset {sorted(PRESETS)}, "
                             "a JSON object nor a JSON file")
        text = path.read_text(encoding="utf-8")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--config is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError("--config JSON must be an object of GPTConfig fields")  # noqa: TRY004
    batch_size, seq_len = d.pop("batch_size", 2), d.pop("seq_len", None)
    try:
        config = GPTConfig.from_dict(d)
    except (ConfigError, TypeError) as e:
        raise ValueError(str(e)) from None
    seq_len = config.block_size if seq_len is None else seq_len
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--config {name} must be an integer >= 1, got {v!r}")
    if seq_len > config.block_size:
        raise ValueError(f"--config seq_len {seq_len} exceeds block_size {config.block_size}")
    return config, batch_size, seq_len


def plan(dtype: str | None, device: str | None) -> list[tuple[str, str]]:
    """(dtype, device) pairs to run. Defaults: float64 and float32 on the CPU; float32 (TF32
    off) and bf16/fp16 autocast on CUDA when there is one. "all" means every one."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError("--device cuda: no CUDA device is available (torch.cuda.is_available()"
                         " is False)")
    devices = ["cpu", *(["cuda"] if cuda else [])] if device in (None, "all") else [device]
    pairs = []
    for dev in devices:
        if dtype is None:
            dts = ["float64", "float32"] if dev == "cpu" else ["float32", *AUTOCAST_DTYPES]
        elif dtype == "all":
            dts = list(DTYPES)
        else:
            dts = [dtype]
        pairs += [(dt, dev) for dt in dts]
    return pairs


def run(
    pairs: list[tuple[str, str]],
    config: GPTConfig,
    batch_size: int,
    seq_len: int,
    *,
    seed: int = 0,
    cases: list[Case] | None = None,
    fault: str | None = None,
    threads: int | None = 1,
    on_case: Callable[[Context], None] | None = None,
) -> list[Row]:
    """Every selected case in every pair (autocast pairs: only cases marked autocast).

    An exception inside a case becomes one failed row, so one broken case cannot hide the
    others. TF32 is off throughout. `threads` sets torch's intra-op threads for the run
    (None: leave as is); the default 1 is several times faster at the small parity sizes,
    where threads only add overhead (4x on 2 busy cores). `on_case` sees each finished case.
    """
    cases = select() if cases is None else cases
    rows: list[Row] = []
    with no_tf32(), torch_threads(threads):
        for dtype, device in pairs:
            runs = [(case, "cpu") for case in cases
                    if case.autocast or dtype not in AUTOCAST_DTYPES]
            if device == "cuda" and dtype not in AUTOCAST_DTYPES and cupy_usable():
                runs += [(case, "cuda") for case in cases if case.cupy]
            for case, numpy_device in runs:
                name = case.name if numpy_device == "cpu" else f"cupy:{case.name}"
                ctx = Context(dtype, device, config, batch_size, seq_len, seed=seed,
                              fault=fault, case=name, numpy_device=numpy_device)
                try:
                    case.run(ctx)
                except Exception as e:  # noqa: BLE001 -- reported as a failed row
                    ctx.fail("<exception>", f"{type(e).__name__}: {e}")
                rows += ctx.rows
                if on_case is not None:
                    on_case(ctx)
    return rows


def cupy_usable() -> bool:
    """CuPy installed and seeing a GPU: numpy_gpt can then run on device "cuda" too."""
    try:
        array_module("cuda")
    except DeviceError:
        return False
    return True


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block, restored after; None changes nothing."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
