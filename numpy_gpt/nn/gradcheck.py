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
from .lora import LoRAConfig
from .model import GPT, make_dropout_masks

TOLERANCE = 1e-6  # float64; typical errors are ~1e-10
TARGETS_ALL = ("c_attn", "c_proj", "c_fc")


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
    }
