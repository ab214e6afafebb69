"""The registry of parity cases: each compares one piece of the twins and records rows.

    layers.py   each numpy_gpt layer (forward, input grad, every weight grad) vs autograd
    llama_layers.py  the same for RMSNorm, RoPE (both layouts, a KV-cache offset), SwiGLU and
                grouped-query attention (full and tiled kernels)
    model.py    the whole GPT: logits, loss and every named gradient, over the config options,
                in eval mode and in train mode with identical dropout masks
    train.py    10 AdamW steps with clipping, warmup+cosine schedule, gradient accumulation
    generate.py KV cache vs recompute, generated tokens, batched generation
    lora.py     LoRA layers and adapted models

Every family has Llama-shaped cases too (named "llama"): they run at the --config size made
Llama-shaped by `llama_config` (RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases,
untied head), so the default run compares both architectures; with a Llama --config
(`--config llama-tiny`) every case, GPT-2's variants included, runs a Llama-shaped model.

Adding cases: write a function `run(ctx: Context) -> None` that calls `ctx.check(name, a,
b, category)` and register it with `register(Case("group/variant", run))` in a module
imported below. Generation and KV-cache cases (category "kv_cache", tolerances already in
tolerances.py) belong in a new `generate.py` here, registered the same way, once
numpy_gpt/torch_gpt generation exists.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from numpy_gpt.nn.config import GPTConfig, arch_fields

from ..harness import Context


@dataclass(frozen=True)
class Case:
    name: str  # "group/variant"; rows carry it, --case selects on it
    run: Callable[[Context], None]
    autocast: bool = False  # also run under bf16/fp16 autocast against the float64 reference
    cupy: bool = False  # on CUDA with CuPy installed, also run with numpy_gpt on the GPU


CASES: list[Case] = []


def llama_config(config: GPTConfig) -> GPTConfig:
    """`config` as Llama has it (GPTConfig.arch "llama"): unchanged when it already is, else
    its sizes with `--arch llama`'s fields (n_head/2 key/value heads when n_head is even)."""
    if config.arch == "llama":
        return config
    return config.replace(**arch_fields("llama", config.n_head))


def register(case: Case) -> Case:
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"parity case {case.name!r} registered twice")
    CASES.append(case)
    return case


def select(patterns: list[str] | None = None) -> list[Case]:
    """Cases whose name matches any glob pattern (all cases when None)."""
    if not patterns:
        return list(CASES)
    return [c for c in CASES if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]


# Importing the case modules registers their cases (order = report order).
from . import generate, layers, llama_layers, lora, model, train  # noqa: F401
