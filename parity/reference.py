"""The float64 reference's intermediate activations, recomputed layer by layer with numpy_gpt.

    params = probe_params(config, rng)                 # every tensor matters (no 0/1 init)
    trace = reference_trace(params, config, idx)       # {probe name: array}, forward order

numpy_gpt.GPT.forward keeps only what its backward needs (the residual stream is updated in
place), so the activations an outside model is compared with are recomputed here from the
same numpy_gpt.nn.layers functions, in the same order. The probe names are the canonical
module names plus "input" or "output", because that is what a forward hook on the model's
matching submodule sees:

    transformer.wte output, transformer.wpe output
    transformer.h.{i}.ln_1 input (the residual stream entering block i), ln_1 output,
    attn.c_attn output (or its q/k/v thirds), attn.c_proj input (attention: softmax(q k^T /
    sqrt(hs)) v, heads merged), attn.c_proj output, attn output, ln_2 input (the residual
    stream after attention), ln_2 output, mlp.c_gate output (SwiGLU), mlp.c_fc output,
    mlp.c_proj input (the GELU or SwiGLU output), mlp.c_proj output, mlp output
    transformer.ln_f input, transformer.ln_f output, logits

Llama-shaped configs are traced too: RMSNorm for the norms, no wpe, RoPE turning q and k
between c_attn (whose output probes are before the turn, as HF's q_proj/k_proj outputs are)
and the attention, grouped-query attention, SwiGLU.

A `Variant` recomputes the trace as a model with one usual config mismatch would: the other
GELU (or none, or ReLU), another norm eps, another attention scale, the other head, biases
ignored, the other RoPE pair layout, LayerNorm where RMSNorm was meant (or the reverse).
diverge.py uses it to name a mismatch instead of listing failures.
Eval mode only (no dropout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numpy_gpt.nn.config import GPTConfig, param_shapes
from numpy_gpt.nn.layers import (
    attention_forward,
    embedding_forward,
    gelu_exact_forward,
    gelu_tanh_forward,
    layernorm_forward,
    linear_forward,
    rmsnorm_forward,
    rope_forward,
    rope_tables,
    swiglu_forward,
)
from numpy_gpt.nn.layers.rope import qk_heads

PROBE_HELP = {
    "attn.c_proj input": "attention: softmax(q k^T / sqrt(hs)) v, heads merged",
    "mlp.c_proj input": "the MLP's activation output: GELU, or SwiGLU's silu(gate) * up",
    "ln_1 input": "the residual stream entering the block",
    "ln_2 input": "the residual stream after attention",
    "ln_f input": "the residual stream after the last block",
}


@dataclass(frozen=True)
class Variant:
    """One way a model can differ from the config; the defaults are the config itself."""

    label: str = ""
    gelu: str | None = None  # "tanh" | "exact" | "none" | "relu"
    eps: float | None = None
    scale: float | None = None  # attention scale instead of 1/sqrt(hs)
    head: str | None = None  # "wte" | "lm_head": which weight the logits use
    zero_bias: str = ""  # biases ignored (read as 0): "linear" | "layernorm" | "all"
    norm: str | None = None  # "layernorm" | "rmsnorm" instead of the config's
    rope_layout: str | None = None  # "halves" | "interleaved" instead of the config's


def probe_params(config: GPTConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float64 parameters at scales where every tensor shows in the outputs: projection
    weights N(0, 1/in), biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.1^2), embeddings
    N(0, 0.02^2) as GPT-2 (so LayerNorm's eps matters at the first ln_1). GPT-2's own init
    (zero biases, unit LayerNorm weights) would hide a bias or LayerNorm-weight bug."""
    params = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(("wte.weight", "wpe.weight")):
            value = rng.normal(0.0, 0.02, shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # LayerNorm weight
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 1.0 / math.sqrt(shape[1]), shape)
        params[name] = value
    return params


def reference_trace(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray,
                    variant: Variant = Variant()) -> dict[str, np.ndarray]:
    """Every probe's float64 value for token ids idx (B,T), in forward order."""
    cfg, P, out = config, params, {}
    eps = cfg.layer_norm_eps if variant.eps is None else variant.eps
    gelu = variant.gelu or cfg.gelu
    norm = variant.norm or cfg.norm
    hs = cfg.n_embd // cfg.n_head

    def get(name: str) -> np.ndarray | None:
        if name.endswith(".bias") and variant.zero_bias:
            is_ln = name.endswith(("ln_1.bias", "ln_2.bias", "ln_f.bias"))
            if variant.zero_bias == "all" or (variant.zero_bias == "layernorm") == is_ln:
                return None
        return P.get(name)

    def ln(x: np.ndarray, key: str) -> np.ndarray:
        out[key + " input"] = x
        if norm == "rmsnorm":
            y, _ = rmsnorm_forward(x, get(key + ".weight"), eps)
        else:
            y, _ = layernorm_forward(x, get(key + ".weight"), get(key + ".bias"), eps)
        out[key + " output"] = y
        return y

    def linear(x: np.ndarray, key: str) -> np.ndarray:
        out[key + " input"] = x
        y, _ = linear_forward(x, get(key + ".weight"), get(key + ".bias"))
        out[key + " output"] = y
        return y

    B, T = idx.shape
    out["transformer.wte output"] = P["transformer.wte.weight"][idx]
    if cfg.position == "learned":
        out["transformer.wpe output"] = P["transformer.wpe.weight"][:T]
        x, _ = embedding_forward(idx, P["transformer.wte.weight"], P["transformer.wpe.weight"])
    else:  # RoPE: no position table
        x = P["transformer.wte.weight"][idx]
    for i in range(cfg.n_layer):
        h = f"transformer.h.{i}."
        a = linear(ln(x, h + "ln_1"), h + "attn.c_attn")
        if variant.scale is not None or cfg.position == "rope":
            a = a.copy()  # the probe keeps c_attn's output as it was
        if variant.scale is not None:  # q * (scale * sqrt(hs)) turns 1/sqrt(hs) into scale
            a[..., :cfg.n_embd] *= variant.scale * math.sqrt(hs)
        if cfg.position == "rope":  # turn the q and k heads (B,T,NH+KV,hs) in place
            cos, sin = rope_tables(T, hs, cfg.rope_theta, a.dtype)
            qk = qk_heads(a, cfg.n_head, cfg.kv_heads)
            qk[...] = rope_forward(qk, cos[:, None], sin[:, None],
                                   variant.rope_layout or cfg.rope_layout)[0]
        a, _ = attention_forward(a, cfg.n_head, n_kv_head=cfg.kv_heads)
        a = linear(a, h + "attn.c_proj")
        out[h + "attn output"] = a
        x = x + a
        y = ln(x, h + "ln_2")
        if cfg.mlp == "swiglu":
            gate = linear(y, h + "mlp.c_gate")
            m, _ = swiglu_forward(gate, linear(y, h + "mlp.c_fc"))
        else:
            m = _gelu(linear(y, h + "mlp.c_fc"), gelu)
        m = linear(m, h + "mlp.c_proj")
        out[h + "mlp output"] = m
        x = x + m
    x = ln(x, "transformer.ln_f")
    head = variant.head or ("wte" if cfg.tie_weights else "lm_head")
    weight = P["transformer.wte.weight" if head == "wte" else "lm_head.weight"]
    out["logits"], _ = linear_forward(x, weight, None)
    return _in_forward_order(out, cfg)


def _gelu(m: np.ndarray, kind: str) -> np.ndarray:
    """The GELU MLP's activation as a variant has it: "tanh" | "exact" | "relu" | "none"."""
    if kind == "relu":
        return np.maximum(m, 0.0)
    if kind == "none":
        return m
    return (gelu_tanh_forward if kind == "tanh" else gelu_exact_forward)(m)[0]


def probe_order(n_layer: int) -> list[str]:
    """The probe names in forward order (a hooked model may fill any subset)."""
    names = ["transformer.wte output", "transformer.wpe output"]
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        names += [h + "ln_1 input", h + "ln_1 output", h + "attn.c_attn output",
                  *(f"{h}attn.c_attn[{q}] output" for q in "qkv"),
                  h + "attn.c_proj input", h + "attn.c_proj output", h + "attn output",
                  h + "ln_2 input", h + "ln_2 output", h + "mlp.c_gate output",
                  h + "mlp.c_fc output",
                  h + "mlp.c_proj input", h + "mlp.c_proj output", h + "mlp output"]
    return [*names, "transformer.ln_f input", "transformer.ln_f output", "logits"]


def qkv_rows(config: GPTConfig) -> tuple[int, int, int]:
    """The sizes of c_attn's q, k and v parts: NH hs, KV hs, KV hs (C each without grouping)."""
    hs = config.head_size
    return config.n_head * hs, config.kv_heads * hs, config.kv_heads * hs


def _in_forward_order(out: dict[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """Add the q/k/v parts of each c_attn output, and order the probes as forward runs."""
    cuts = np.cumsum(qkv_rows(config))[:2]
    for i in range(config.n_layer):
        qkv = out[f"transformer.h.{i}.attn.c_attn output"]
        for j, q in enumerate("qkv"):
            out[f"transformer.h.{i}.attn.c_attn[{q}] output"] = np.split(qkv, cuts, axis=-1)[j]
    return {k: out[k] for k in probe_order(config.n_layer) if k in out}


def describe(probe: str) -> str:
    """A probe name with what it holds, e.g. "... attn.c_proj input (attention: ...)"."""
    for suffix, text in PROBE_HELP.items():
        if probe.endswith(suffix):
            return f"{probe} ({text})"
    return probe
