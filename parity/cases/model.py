"""Model cases: the whole GPT, numpy_gpt vs torch_gpt, from the same parameters.

numpy_gpt's params are loaded into torch_gpt by key (the key sets and every shape must be
equal, STYLE.md P5); then logits, loss and every gradient by name are compared. Variants
cover tied/untied head, bias on/off, both GELUs, both attention implementations, label
smoothing, ignored targets (-100), no targets, the B=1, T=1 edge, train mode with
dropout > 0 using identical masks from numpy_gpt.nn.model_parts.make_dropout_masks, and numpy_gpt's
tiled attention kernel (GPTConfig.attention="tiled") against torch's SDPA. The "llama"
variants run the --config size Llama-shaped (cases.llama_config): RMSNorm, RoPE in both pair
layouts, SwiGLU, grouped-query attention (and plain multi-head with `mha`), in eval and train
mode, full and tiled attention, B=1 T=1.

Under bf16/fp16 autocast the torch side keeps float32 weights and is compared with the
float64 reference; fp16 scales the loss by a constant 1024 before backward (what GradScaler
does, minus its dynamic search) so that small gradients do not flush to zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

import torch_gpt
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from numpy_gpt.nn.model_parts import make_dropout_masks

from ..harness import Context
from . import Case, llama_config, register

FP16_LOSS_SCALE = 1024.0


@dataclass(frozen=True)
class Variant:
    name: str
    tie_weights: bool = True
    bias: bool = True
    gelu: str = "tanh"
    attn: str = "sdpa"
    label_smoothing: float = 0.0
    targets: str = "all"  # "all" | "ignored" (about a third set to -100) | "none"
    dropout: float = 0.0  # > 0: train mode, identical dropout masks in both twins
    edge: bool = False  # B=1, T=1 instead of the context's sizes
    attention: str | None = None  # GPTConfig.attention for numpy_gpt; None: the context's
    attention_tile: int | None = None  # GPTConfig.attention_tile; None: the context's
    llama: bool = False  # the context's size Llama-shaped (cases.llama_config)
    rope_layout: str | None = None  # GPTConfig.rope_layout; None: the config's
    mha: bool = False  # n_kv_head = n_head (no grouping)


VARIANTS = [
    Variant("tied-bias-tanh-sdpa"),
    Variant("tied-bias-tanh-manual", attn="manual"),
    Variant("untied-nobias-exact-sdpa-smooth", tie_weights=False, bias=False, gelu="exact",
            label_smoothing=0.1),
    Variant("untied-nobias-exact-manual-smooth-ignore", tie_weights=False, bias=False,
            gelu="exact", attn="manual", label_smoothing=0.1, targets="ignored"),
    Variant("tied-nobias-exact-sdpa-ignore", bias=False, gelu="exact", targets="ignored"),
    Variant("untied-bias-tanh-manual-notargets", tie_weights=False, attn="manual",
            targets="none"),
    Variant("tied-bias-tanh-sdpa-B1T1", edge=True),
    Variant("train-dropout-tied-bias-tanh-manual", attn="manual", dropout=0.2),
    Variant("train-dropout-untied-nobias-exact-manual-smooth-ignore", tie_weights=False,
            bias=False, gelu="exact", attn="manual", label_smoothing=0.1, targets="ignored",
            dropout=0.2),
    # numpy_gpt on its tiled kernel (tiles of 2 rows: several per sequence) vs torch SDPA
    Variant("tiled-tied-bias-tanh-sdpa", attention="tiled", attention_tile=2),
    Variant("tiled-untied-nobias-exact-sdpa-smooth-ignore", tie_weights=False, bias=False,
            gelu="exact", label_smoothing=0.1, targets="ignored", attention="tiled",
            attention_tile=2),
    # Llama-shaped: RMSNorm, RoPE, SwiGLU, grouped-query attention
    Variant("llama-untied-nobias-sdpa", llama=True, tie_weights=False, bias=False),
    Variant("llama-interleaved-manual-smooth-ignore", llama=True, tie_weights=False,
            bias=False, rope_layout="interleaved", attn="manual", label_smoothing=0.1,
            targets="ignored"),
    Variant("llama-mha-tied-bias-sdpa-notargets", llama=True, mha=True, targets="none"),
    Variant("llama-untied-nobias-sdpa-B1T1", llama=True, tie_weights=False, bias=False,
            edge=True),
    Variant("train-dropout-llama-interleaved-manual", llama=True, tie_weights=False,
            bias=False, rope_layout="interleaved", attn="manual", dropout=0.2),
    Variant("tiled-llama-untied-nobias-sdpa-ignore", llama=True, tie_weights=False, bias=False,
            targets="ignored", attention="tiled", attention_tile=2),
]


def make_targets(rng: np.random.Generator, V: int, B: int, T: int, ignored: bool) -> np.ndarray:
    """Random targets; with `ignored`, about a third are -100 (at least one is kept)."""
    targets = rng.integers(0, V, (B, T))
    if ignored:
        drop = rng.random((B, T)) < 1 / 3
        drop.flat[rng.integers(B * T)] = False  # the loss needs one counted position
        targets[drop] = -100
    return targets


def compare_model(
    ctx: Context,
    config: GPTConfig,
    *,
    attn: str = "sdpa",
    batch_size: int | None = None,
    seq_len: int | None = None,
    label_smoothing: float = 0.0,
    targets: str = "all",
    train: bool = False,
) -> None:
    """Forward (and backward with targets) in both twins; records logits, loss, grads."""
    rng = ctx.rng(1)
    B, T = batch_size or ctx.batch_size, min(seq_len or ctx.seq_len, config.block_size)
    ref = NumpyGPT(config, dtype=ctx.ref_dtype, seed=ctx.seed, device=ctx.numpy_device)
    model = torch_gpt.GPT(config, attn=attn, device=ctx.device, dtype=ctx.torch_dtype,
                          init=False)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ref.params.items()}
    if own != theirs:
        ctx.fail("state_dict keys/shapes", f"torch {own} != numpy {theirs}")
        return
    model.load_numpy_params(ref.params)
    model.train(train)
    ctx.plant_fault(model)

    idx = rng.integers(0, config.vocab_size, (B, T))
    tgt = (None if targets == "none"
           else make_targets(rng, config.vocab_size, B, T, ignored=targets == "ignored"))
    masks = make_dropout_masks(config, B, T, rng) if train and config.dropout > 0 else None

    logits, loss, cache = ref.forward(idx, tgt, label_smoothing=label_smoothing, train=train,
                                      dropout_masks=masks)
    t_masks = None if masks is None else {k: ctx.tensor(m) for k, m in masks.items()}
    with ctx.autocast():
        t_logits, t_loss = model(ctx.tensor(idx), None if tgt is None else ctx.tensor(tgt),
                                 label_smoothing=label_smoothing, dropout_masks=t_masks)
    ctx.check("logits", t_logits, logits, "forward")
    if tgt is None:
        if t_loss is not None:
            ctx.fail("loss", "torch returned a loss without targets")
        return
    ctx.check("loss", t_loss, loss, "forward")

    grads = ref.backward(cache)
    scale = FP16_LOSS_SCALE if ctx.dtype == "float16" else 1.0
    (t_loss * scale).backward()
    for name, p in model.named_parameters():
        t_grad = torch.zeros_like(p) if p.grad is None else p.grad / scale
        ctx.check(f"grad:{name}", t_grad, grads[name], "grad")


def run_variant(ctx: Context, v: Variant) -> None:
    config = llama_config(ctx.config) if v.llama else ctx.config
    config = config.replace(tie_weights=v.tie_weights, bias=v.bias, gelu=v.gelu,
                            dropout=v.dropout, rope_layout=v.rope_layout or config.rope_layout)
    if v.mha:
        config = config.replace(n_kv_head=None)
    if v.attention is not None:
        config = config.replace(attention=v.attention,
                                attention_tile=v.attention_tile or config.attention_tile)
    compare_model(ctx, config, attn=v.attn, batch_size=1 if v.edge else None,
                  seq_len=1 if v.edge else None, label_smoothing=v.label_smoothing,
                  targets=v.targets, train=v.dropout > 0)


for _v in VARIANTS:
    register(Case(f"model/{_v.name}", functools.partial(run_variant, v=_v), autocast=True,
                  cupy=True))
