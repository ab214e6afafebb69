"""Finite-difference gradient checks of every layer and of the whole model.

For a layer out = f(x, w, ...), pick a random upstream gradient dout and the scalar
L = sum(out * dout). Its analytic gradient wrt each input is exactly what f's backward returns
for that dout, and its numerical gradient is the central difference

    dL/dx[i] ~ (L(x + h e_i) - L(x - h e_i)) / (2h)        error O(h^2) + O(eps / h)

taken element by element. In float64 with h = 1e-5 the two agree to ~1e-10 relative error;
a wrong formula is off by O(1). The model check differentiates the mean loss wrt every
parameter the same way.

relative error = max |numerical - analytic| / max(max |numerical|, max |analytic|)

Deliberately small shapes that all differ (B=2, T=3, C=8, NH=2, V=11), so a transposed
axis cannot hide. Ref: CS231n "gradient checking"; llm.c test_gpt2.c.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import GPTConfig
from .layers import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    flash_attention_backward,
    flash_attention_forward,
    gelu_exact_backward,
    gelu_exact_forward,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    lora_backward,
    lora_forward,
)
from .layers.rmsnorm import rmsnorm_backward, rmsnorm_forward
from .layers.rope import rope_backward, rope_forward, rope_tables
from .layers.swiglu import swiglu_backward, swiglu_forward
from .lora import LoRAConfig
from .model import GPT
from .model_parts import make_dropout_masks

TOLERANCE = 1e-6  # float64; typical errors are ~1e-10
TARGETS_ALL = ("c_attn", "c_proj", "c_fc")
LLAMA_TARGETS = ("c_attn", "c_proj", "c_gate", "c_fc")  # q/k/v, o and the three MLP matrices


@dataclass
class GradCheckRow:
    case: str  # which layer / model variant
    tensor: str  # which input or parameter
    rel_error: float
    ok: bool


@dataclass
class LayerCase:
    """A layer under test: forward(*tensors) -> out, backward(dout, cache) -> grads tuple."""

    forward: Callable
    backward: Callable
    tensors: dict[str, np.ndarray]  # differentiable inputs, in forward-argument order


def relative_error(numerical: np.ndarray, analytic: np.ndarray) -> float:
    scale = max(np.abs(numerical).max(), np.abs(analytic).max(), 1e-30)
    return float(np.abs(numerical - analytic).max() / scale)


def numerical_grad(objective: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of objective() wrt every element of x, perturbing x in place."""
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = objective()
        x[i] = old - h
        down = objective()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def layer_cases(rng: np.random.Generator) -> dict[str, LayerCase]:
    """Every layer, in float64, at small shapes that all differ, plus the edge variants."""
    B, T, C, NH, V = 2, 3, 8, 2, 11
    randn = rng.standard_normal
    cases: dict[str, LayerCase] = {}

    idx = np.array([[1, 4, 1], [4, 4, 0]])  # repeated ids: the scatter-add must accumulate
    cases["embedding"] = LayerCase(
        lambda wte, wpe: embedding_forward(idx, wte, wpe),
        embedding_backward, {"wte": randn((V, C)), "wpe": randn((5, C))})
    # LayerNorm parameters moved away from 1 and 0, so a missing w or b term shows up
    cases["layernorm"] = LayerCase(
        lambda x, w, b: layernorm_forward(x, w, b, 1e-5), layernorm_backward,
        {"x": randn((B, T, C)), "w": 1.0 + 0.5 * randn(C), "b": 0.5 * randn(C)})
    cases["layernorm_nobias"] = LayerCase(
        lambda x, w: layernorm_forward(x, w, None, 1e-5),
        lambda d, c: layernorm_backward(d, c)[:2], {"x": randn((B, T, C)), "w": 1.0 + randn(C)})
    cases["linear"] = LayerCase(
        linear_forward, linear_backward,
        {"x": randn((B, T, C)), "w": randn((3 * C, C)), "b": randn(3 * C)})
    cases["linear_nobias"] = LayerCase(
        lambda x, w: linear_forward(x, w, None), lambda d, c: linear_backward(d, c)[:2],
        {"x": randn((B, T, C)), "w": randn((5, C))})
    cases["gelu_tanh"] = LayerCase(
        gelu_tanh_forward, lambda d, c: (gelu_tanh_backward(d, c),), {"x": 2 * randn((B, T, C))})
    cases["gelu_exact"] = LayerCase(
        gelu_exact_forward, lambda d, c: (gelu_exact_backward(d, c),), {"x": 2 * randn((B, T, C))})
    cases["attention"] = LayerCase(
        lambda qkv: attention_forward(qkv, NH), lambda d, c: (attention_backward(d, c),),
        {"qkv": randn((B, T, 3 * C))})
    attn_mask = rng.random((B, NH, T, T)) >= 0.3
    cases["attention_dropout"] = LayerCase(
        lambda qkv: attention_forward(qkv, NH, attn_mask, 0.3),
        lambda d, c: (attention_backward(d, c),), {"qkv": randn((B, T, 3 * C))})
    cases["attention_T1"] = LayerCase(
        lambda qkv: attention_forward(qkv, NH), lambda d, c: (attention_backward(d, c),),
        {"qkv": randn((1, 1, 3 * C))})
    # the tiled kernel: odd T not a multiple of the tile (a short last tile, diagonal tiles
    # and skipped ones), one row per tile, T = 1, and a tile larger than T
    for name, (Bt, Tt, tile) in {"attention_tiled": (B, 7, 3), "attention_tiled_tile1": (1, 5, 1),
                                 "attention_tiled_T1": (1, 1, 4),
                                 "attention_tiled_big_tile": (B, T, 16)}.items():
        cases[name] = LayerCase(
            functools.partial(flash_attention_forward, n_head=NH, tile=tile),
            lambda d, c: (flash_attention_backward(d, c),), {"qkv": randn((Bt, Tt, 3 * C))})
    cases.update(llama_layer_cases(rng))
    cases["lora"] = LayerCase(
        lambda x, A, B_: lora_forward(x, A, B_, 2.0), lora_backward,
        {"x": randn((B, T, C)), "A": randn((3, C)), "B": randn((5, 3))})
    lora_mask = rng.random((B, T, C)) >= 0.2
    cases["lora_dropout"] = LayerCase(
        lambda x, A, B_: lora_forward(x, A, B_, 0.5, lora_mask, 0.2), lora_backward,
        {"x": randn((B, T, C)), "A": randn((2, C)), "B": randn((4, 2))})
    drop_mask = rng.random((B, T, C)) >= 0.25
    cases["dropout"] = LayerCase(
        lambda x: dropout_forward(x, drop_mask, 0.25), lambda d, c: (dropout_backward(d, c),),
        {"x": randn((B, T, C))})

    targets = rng.integers(0, V, (B, T))
    ignored = targets.copy()
    ignored[0, 1] = ignored[1, 2] = -100  # ignored positions: no loss, no gradient

    def ce_case(tg: np.ndarray, eps: float) -> LayerCase:
        return LayerCase(
            lambda logits: cross_entropy_forward(logits, tg, eps),
            lambda d, c: (cross_entropy_backward(c, float(d)),), {"logits": 3 * randn((B, T, V))})

    cases["cross_entropy"] = ce_case(targets, 0.0)
    cases["cross_entropy_smoothing"] = ce_case(targets, 0.1)
    cases["cross_entropy_ignore"] = ce_case(ignored, 0.1)
    return cases


def llama_layer_cases(rng: np.random.Generator) -> dict[str, LayerCase]:
    """RMSNorm, RoPE (both layouts, a KV-cache offset), SwiGLU and grouped-query attention in
    both kernels (KV = 1: multi-query, KV = 2 of NH = 4; odd T, T = 1, short last tiles)."""
    B, T, C, NH, hs = 2, 3, 8, 4, 2
    randn = rng.standard_normal
    cases: dict[str, LayerCase] = {}
    cases["rmsnorm"] = LayerCase(
        lambda x, w: rmsnorm_forward(x, w, 1e-5), rmsnorm_backward,
        {"x": randn((B, T, C)), "w": 1.0 + 0.5 * randn(C)})
    cos, sin = rope_tables(16, 6, 100.0, np.dtype(np.float64))  # theta 100: angles turn fast
    for layout in ("halves", "interleaved"):
        for name, (Tr, offset) in {"": (5, 0), "_offset": (3, 7), "_T1": (1, 11)}.items():
            rows = (slice(offset, offset + Tr), None)  # positions offset.., as (T, 1, hs/2)
            cases[f"rope_{layout}{name}"] = LayerCase(
                functools.partial(rope_forward, cos=cos[rows], sin=sin[rows], layout=layout),
                lambda d, c: (rope_backward(d, c),), {"x": randn((B, Tr, 3, 6))})
    cases["swiglu"] = LayerCase(swiglu_forward, swiglu_backward,
                                {"g": 3 * randn((B, T, 5)), "u": randn((B, T, 5))})
    for KV in (1, 2):
        width = (NH + 2 * KV) * hs
        cases[f"attention_gqa_kv{KV}"] = LayerCase(
            functools.partial(attention_forward, n_head=NH, n_kv_head=KV),
            lambda d, c: (attention_backward(d, c),), {"qkv": randn((B, 5, width))})
        for name, (Bt, Tt, tile) in {"": (B, 7, 3), "_T1": (1, 1, 4)}.items():
            cases[f"attention_tiled_gqa_kv{KV}{name}"] = LayerCase(
                functools.partial(flash_attention_forward, n_head=NH, tile=tile, n_kv_head=KV),
                lambda d, c: (flash_attention_backward(d, c),), {"qkv": randn((Bt, Tt, width))})
    attn_mask = rng.random((B, NH, T, T)) >= 0.3
    cases["attention_gqa_dropout"] = LayerCase(
        lambda qkv: attention_forward(qkv, NH, attn_mask, 0.3, n_kv_head=2),
        lambda d, c: (attention_backward(d, c),), {"qkv": randn((B, T, (NH + 4) * hs))})
    return cases


def check_layer(name: str, case: LayerCase, rng: np.random.Generator) -> list[GradCheckRow]:
    """Numerical vs analytic gradient of sum(out * dout) wrt each input of one layer."""
    tensors = list(case.tensors.values())
    out, cache = case.forward(*tensors)
    dout = rng.standard_normal(np.shape(out))
    analytic = case.backward(dout if np.ndim(out) else float(dout), cache)

    def objective() -> float:
        return float(np.sum(case.forward(*tensors)[0] * dout))

    rows = []
    for (tname, x), grad in zip(case.tensors.items(), analytic):
        err = relative_error(numerical_grad(objective, x), grad)
        rows.append(GradCheckRow(name, tname, err, err <= TOLERANCE))
    return rows


def check_model(
    config: GPTConfig,
    *,
    case: str = "model",
    B: int = 2,
    T: int | None = None,
    label_smoothing: float = 0.0,
    ignore: bool = False,
    dropout_masks: bool = False,
    lora: LoRAConfig | None = None,
    seed: int = 0,
) -> list[GradCheckRow]:
    """Numerical vs analytic gradient of the model's mean loss wrt every parameter (float64).

    Parameters are moved away from their init (LayerNorm away from 1/0, biases nonzero) so no
    term of a backward can hide behind a zero or a one.
    """
    rng = np.random.default_rng(seed)
    T = T or config.block_size
    model = GPT(config, dtype="float64", seed=seed)
    if lora is not None:
        model.add_lora(lora, seed=seed)
    params = {**model.params, **model.lora_params}
    for p in params.values():  # LoRA's B too: at its zero init, dA would be exactly 0
        p += 0.1 * rng.standard_normal(p.shape)
    idx = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    if ignore:
        targets[0, 0] = -100
    masks = make_dropout_masks(config, B, T, rng, lora) if dropout_masks else None
    train = masks is not None

    def objective() -> float:
        return model.forward(idx, targets, label_smoothing=label_smoothing, train=train,
                             dropout_masks=masks)[1]

    _, _, cache = model.forward(idx, targets, label_smoothing=label_smoothing, train=train,
                                dropout_masks=masks)
    grads = model.backward(cache)
    rows = []
    for name, p in params.items():
        err = relative_error(numerical_grad(objective, p), grads[name])
        rows.append(GradCheckRow(case, name, err, err <= TOLERANCE))
    return rows


def model_variants() -> dict[str, tuple[GPTConfig, dict]]:
    """The whole-model checks: tied/untied, bias on/off, both GELUs, dropout, smoothing, ignore."""
    base = GPTConfig(vocab_size=11, block_size=4, n_layer=2, n_head=2, n_embd=8)
    return {
        "model": (base, {}),
        "model_untied_nobias": (base.replace(tie_weights=False, bias=False), {}),
        "model_gelu_exact": (base.replace(gelu="exact", n_layer=1), {}),
        "model_dropout": (base.replace(dropout=0.2, n_layer=1), {"dropout_masks": True}),
        "model_tiled": (base.replace(n_layer=1, attention="tiled", attention_tile=3), {}),
        "model_smoothing_ignore": (base.replace(n_layer=1), {"label_smoothing": 0.1,
                                                             "ignore": True}),
        "model_lora": (base.replace(n_layer=1, dropout=0.1), {
            "lora": LoRAConfig(rank=2, alpha=4.0, dropout=0.2, targets=TARGETS_ALL),
            "dropout_masks": True}),
        **llama_variants(),
    }


def llama_variants() -> dict[str, tuple[GPTConfig, dict]]:
    """Llama-shaped models (RMSNorm, RoPE, SwiGLU, no biases, untied): grouped (KV = 2 of 4),
    multi-query (KV = 1) and multi-head (KV = NH) attention, both RoPE layouts, both kernels,
    odd T and T = 1, and each new piece alone on GPT-2 (one flag away)."""
    llama = GPTConfig(vocab_size=11, block_size=5, n_layer=2, n_head=4, n_embd=8,
                      norm="rmsnorm", position="rope", mlp="swiglu", ffn_hidden=6, n_kv_head=2,
                      bias=False, tie_weights=False)
    one = llama.replace(n_layer=1)
    return {
        "model_llama": (llama, {"T": 5}),
        "model_llama_mqa_interleaved": (one.replace(n_kv_head=1, rope_layout="interleaved"),
                                        {"T": 3}),
        "model_llama_mha_T1": (one.replace(n_kv_head=4), {"T": 1}),
        "model_llama_tiled": (one.replace(attention="tiled", attention_tile=2), {"T": 5}),
        "model_llama_bias_tied_dropout": (one.replace(bias=True, tie_weights=True, dropout=0.2),
                                          {"T": 4, "dropout_masks": True}),
        "model_llama_lora": (one.replace(dropout=0.1), {
            "T": 3, "lora": LoRAConfig(rank=2, alpha=4.0, dropout=0.2, targets=LLAMA_TARGETS),
            "dropout_masks": True}),
        "model_gpt2_rope": (GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=2,
                                      n_embd=8, position="rope"), {"T": 3}),
        "model_gpt2_rmsnorm_swiglu": (GPTConfig(vocab_size=11, block_size=4, n_layer=1,
                                                n_head=2, n_embd=8, norm="rmsnorm",
                                                mlp="swiglu", ffn_hidden=5), {}),
    }
