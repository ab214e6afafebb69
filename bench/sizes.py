"""Benchmark sizes: the named model shapes of DESIGN.md's performance targets, and sweeps.

    size = SIZES["6L-384"].for_device("cpu")     # config (GPTConfig), B, T, iteration counts
    sizes = sweep_sizes("n_embd")                  # C = 64 .. 512 at 4L/4H, T=64, B=8

A Size is one (GPTConfig, B, T) plus default warm-up and timed iteration counts, chosen so
that one measurement takes a few seconds on a 2-core CPU. gpt2-124m changes with the device:
on the CPU it is llm.c's reference shape (B=4, T=64, V=50257); on CUDA it is the training
shape (T=1024) with the vocabulary padded to 50304, a multiple of 128, as nanoGPT and llm.c
pad it for the GPU's matmul tiles (the padded rows are never targets). llama-135m (shaped
like SmolLM-135M) does the same with T=1024 on CUDA; its vocabulary, 49152, needs no padding.
The Llama sizes (llama-6L-384, llama-135m, --quick's llama-tiny) are Llama blocks (issue 25:
RMSNorm, RoPE, SwiGLU, grouped-query attention), named but not in DEFAULT_SIZES.

Inputs are drawn from a seeded generator (`make_inputs`), so the parent process (which
computes the float64 reference) and every worker build exactly the same idx and targets.

Ref: nanoGPT config/train_shakespeare_char.py (baby), README (6L/384), llm.c train_gpt2.c.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from numpy_gpt.nn.config import GPTConfig, arch_fields

SWEEPS = ("n_embd", "T")


@dataclass(frozen=True)
class Size:
    name: str
    config: GPTConfig
    batch_size: int  # B
    seq_len: int  # T (<= config.block_size)
    warmup: int  # default untimed iterations
    iters: int  # default timed iterations
    sweep: str | None = None  # "n_embd" | "T" for sweep points, None for named sizes
    sweep_value: int | None = None  # the swept quantity's value (the x axis)

    def for_device(self, device: str) -> Size:
        """The shape to run on `device` ("cpu" or "cuda"): only the ~124M/135M sizes differ."""
        if self.name == "gpt2-124m" and device == "cuda":
            return replace(self, config=self.config.replace(vocab_size=50304), seq_len=1024,
                           iters=10, warmup=3)
        if self.name == "llama-135m" and device == "cuda":  # 49152 = 384 x 128: no padding
            return replace(self, config=self.config.replace(block_size=1024), seq_len=1024,
                           iters=10, warmup=3)
        if self.name == "gpt2-124m-B16" and device == "cuda":
            return replace(self, config=self.config.replace(vocab_size=50304))
        return self

    def shape(self) -> dict[str, Any]:
        c = self.config
        return {"B": self.batch_size, "T": self.seq_len, "n_layer": c.n_layer,
                "n_head": c.n_head, "n_kv_head": c.kv_heads, "n_embd": c.n_embd,
                "vocab_size": c.vocab_size, "block_size": c.block_size, "arch": c.arch}


def _cfg(n_layer: int, n_head: int, n_embd: int, T: int, vocab_size: int = 65) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=T, n_layer=n_layer, n_head=n_head,
                     n_embd=n_embd)


def _llama(n_layer: int, n_head: int, n_kv_head: int, n_embd: int, T: int,
           vocab_size: int = 65, **fields: Any) -> GPTConfig:
    """A Llama-shaped config (--arch llama's fields: RMSNorm, RoPE halves, SwiGLU, no bias,
    untied head), with its own n_kv_head and any field overridden by `fields`."""
    return GPTConfig(**{**arch_fields("llama", n_head), "vocab_size": vocab_size,
                        "block_size": T, "n_layer": n_layer, "n_head": n_head,
                        "n_embd": n_embd, "n_kv_head": n_kv_head, **fields})


SIZES: dict[str, Size] = {
    # nanoGPT's CPU "baby" Shakespeare-char config
    "baby": Size("baby", _cfg(4, 4, 128, 64), 12, 64, warmup=3, iters=20),
    # nanoGPT's README Shakespeare-char GPU config, run on the CPU
    "6L-384": Size("6L-384", _cfg(6, 6, 384, 256), 8, 256, warmup=2, iters=6),
    # GPT-2 small; block_size stays 1024 so the parameter count is GPT-2's
    "gpt2-124m": Size("gpt2-124m", GPTConfig(vocab_size=50257, block_size=1024, n_layer=12,
                                             n_head=12, n_embd=768), 4, 64, warmup=1, iters=3),
    # GPT-2 small at its full context, one sequence: where numpy_gpt needs its tiled attention
    # (GPTConfig.attention "auto" tiles T > 128). Named, not in DEFAULT_SIZES: each of its
    # train steps takes several seconds on 2 cores (see bench/README.md)
    "gpt2-124m-T1024": Size("gpt2-124m-T1024", GPTConfig(vocab_size=50257, block_size=1024,
                                                         n_layer=12, n_head=12, n_embd=768),
                            1, 1024, warmup=1, iters=3),
    # GPT-2 small as it trains on a GPU: B=16 at T=1024, the vocabulary padded to 50304 on
    # CUDA (bench/gpu_check.py's bf16-compiled MFU target). Never in the CPU defaults.
    "gpt2-124m-B16": Size("gpt2-124m-B16", GPTConfig(vocab_size=50257, block_size=1024,
                                                     n_layer=12, n_head=12, n_embd=768),
                          16, 1024, warmup=2, iters=6),
    # --quick: small enough that a whole run takes seconds (timings mean nothing)
    "tiny": Size("tiny", _cfg(2, 2, 32, 16), 2, 16, warmup=1, iters=2),
    # Llama blocks (issue 25), named, not in DEFAULT_SIZES (bench/README.md "Llama sizes"):
    # 6L-384's shape with RMSNorm, RoPE, SwiGLU of the default width (F = 1024), no bias,
    # an untied head and 2 key/value heads for the 6 query heads
    "llama-6L-384": Size("llama-6L-384", _llama(6, 6, 2, 384, 256), 8, 256, warmup=2,
                         iters=6),
    # shaped like HuggingFaceTB/SmolLM-135M (its config.json: 30 layers, hidden 576, 9 heads,
    # 3 key/value heads, intermediate 1536, vocab 49152, tie_word_embeddings true, rope_theta
    # 10000, rms_norm_eps 1e-5): 134.5M parameters. On the CPU gpt2-124m's B=4, T=64; on CUDA
    # T=1024 (for_device). block_size is T (RoPE has no position table, so it changes no
    # parameter; it only sizes the KV cache both twins preallocate)
    "llama-135m": Size("llama-135m", _llama(30, 9, 3, 576, 64, vocab_size=49152,
                                            ffn_hidden=1536, tie_weights=True),
                       4, 64, warmup=1, iters=3),
    # --quick's Llama: every new layer and a grouped K/V head in seconds (timings mean nothing)
    "llama-tiny": Size("llama-tiny", _llama(2, 4, 2, 32, 16), 2, 16, warmup=1, iters=2),
}
DEFAULT_SIZES = ("baby", "6L-384", "gpt2-124m")

SWEEP_N_EMBD = (64, 128, 256, 384, 512)  # at 4L/4H, T=64, B=8
SWEEP_T = (32, 64, 128, 256, 512, 1024, 2048)  # at 4L/4H/128d, B=8
LONG_T = 1024  # sweep points from here on time fewer iterations (a step takes seconds)


# The long-context sweep on a GPU (bench/gpu_check.py): T 1024..8192 at 4L/4H/128d, B=1,
# named "TL<T>" and plotted as T-sweep points. Not a --sweep choice: on 2 CPU cores its last
# points would take many minutes.
SWEEP_T_LONG = (1024, 2048, 4096, 8192)


def long_t_sizes(quick: bool = False) -> list[Size]:
    """The points of the long-context sweep; `quick` gives two tiny ones (gpu_check's dry run)."""
    values, C, B, L = ((8, 16), 32, 2, 2) if quick else (SWEEP_T_LONG, 128, 1, 4)
    return [Size(f"TL{t}", _cfg(L, 4, C, t), B, t, warmup=1, iters=2 if quick else 3,
                 sweep="T", sweep_value=t) for t in values]


def sweep_sizes(sweep: str, quick: bool = False) -> list[Size]:
    """The points of one sweep; `quick` gives two tiny points per sweep."""
    if sweep == "n_embd":
        values = (16, 32) if quick else SWEEP_N_EMBD
        T, B = (16, 2) if quick else (64, 8)
        return [Size(f"C{c}", _cfg(2 if quick else 4, 4, c, T), B, T, warmup=1,
                     iters=2 if quick else 8, sweep="n_embd", sweep_value=c) for c in values]
    if sweep == "T":
        values = (8, 16) if quick else SWEEP_T
        C, B = (32, 2) if quick else (128, 8)
        return [Size(f"T{t}", _cfg(2 if quick else 4, 4, C, t), B, t, warmup=1,
                     iters=2 if quick else (3 if t >= LONG_T else 8), sweep="T",
                     sweep_value=t) for t in values]
    raise ValueError(f"unknown sweep {sweep!r}; one of {SWEEPS}")


def get_size(name: str, quick: bool = False) -> Size:
    """A named size or a sweep point ("C256", "T128")."""
    if name in SIZES:
        return SIZES[name]
    for s in [p for sweep in SWEEPS for p in sweep_sizes(sweep, quick)] + long_t_sizes(quick):
        if s.name == name:
            return s
    raise ValueError(f"unknown size {name!r}; one of {sorted(SIZES)} or a sweep point")


def make_inputs(size: Size, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(idx, targets), both (B, T) int64, uniform over the vocabulary, from `seed`.

    Targets stay below the unpadded GPT-2 vocabulary (50257) so padded rows are never targets.
    """
    rng = np.random.default_rng([seed, 1])
    shape = (size.batch_size, size.seq_len)
    V = min(size.config.vocab_size, 50257)
    return rng.integers(0, V, shape, dtype=np.int64), rng.integers(0, V, shape, dtype=np.int64)
