"""The Llama exercises' layers: RMSNorm, RoPE, SwiGLU and grouped-query attention.

As catalog.py for GPT-2's layers: the reference is numpy_gpt.nn.layers itself, the cases are
small shapes that all differ (with T=1 at a position other than 0, where RoPE turns nothing),
and each known mistake is computed exactly, so a diagnosis names it. The order is
docs/backprop.md §10's; "llama", the whole Llama-shaped backward, is llama_model.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.layers import (
    attention_backward,
    attention_forward,
    rmsnorm_backward,
    rmsnorm_forward,
    rope_backward,
    rope_forward,
    rope_tables,
    swiglu_backward,
    swiglu_forward,
)
from .spec import Case, Exercise, Mistake, norm_cases

EPS = 1e-5  # RMSNorm's eps in every case


def _mean(v: np.ndarray) -> np.ndarray:
    return v.mean(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- RMSNorm

def _rmsnorm_cases(rng: np.random.Generator) -> list[Case]:
    return norm_cases(rng, EPS, bias=False)


def _rmsnorm_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    n, rstd, w = cache.n, cache.rstd, cache.w
    g = dout * w
    C = n.shape[-1]
    return [
        Mistake(0, "dx misses its mean_C(g n) term: rstd = 1/rms depends on every x of the "
                   "row, so subtract n * mean_C(g * n) (the path through the root mean square)",
                rstd * g),
        Mistake(0, "dx has LayerNorm's - mean_C(g) term: RMSNorm subtracts no mean, so that "
                   "path does not exist; dx = rstd * (g - n * mean_C(g n))",
                rstd * (g - _mean(g) - n * _mean(g * n))),
        Mistake(0, "dx's second term sums over C where mean(x²) takes the mean: "
                   "d rstd/dx_i = -rstd² n_i / C", rstd * (g - n * C * _mean(g * n))),
        Mistake(0, "dx forgot the scale w: the gradient wrt n is g = dout * w, not dout",
                rstd * (dout - n * _mean(dout * n))),
    ]


RMSNORM = Exercise(
    "rmsnorm", "RMSNorm (Llama's norm)", "10a. RMSNorm", "rmsnorm_forward", "rmsnorm_backward",
    ("dx", "dw"), _rmsnorm_cases,
    lambda c: [c.tensors["x"], c.tensors["w"], c.static["eps"]],
    rmsnorm_forward, rmsnorm_backward, _rmsnorm_mistakes)


# ---------------------------------------------------------------------------- RoPE

OTHER_LAYOUT = {"halves": "interleaved", "interleaved": "halves"}
PAIRS = {"halves": "(x[i], x[i + hs/2])", "interleaved": "(x[2i], x[2i + 1])"}


def _rope_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    # (B, T, heads, hs, first position, layout, theta): T=1 sits at position 7 (a KV cache's
    # offset), since position 0 turns by 0 and would let every mistake pass
    for B, T, H, hs, offset, layout, theta in ((2, 3, 5, 4, 0, "halves", 10000.0),
                                               (1, 4, 2, 6, 0, "interleaved", 10000.0),
                                               (1, 1, 3, 8, 7, "halves", 100.0),
                                               (3, 2, 1, 6, 5, "interleaved", 100.0)):
        cos, sin = rope_tables(offset + T, hs, theta, np.dtype(np.float64))
        static = {"cos": cos[offset:, None], "sin": sin[offset:, None], "layout": layout}
        label = (f"B={B} T={T} heads={H} hs={hs} {layout}"
                 + (f" from position {offset}" if offset else ""))
        cases.append(Case(label, {"x": rng.standard_normal((B, T, H, hs))}, static,
                          {"B": B, "T": T, "heads": H, "hs": hs}))
    return cases


def rope_variant(dout: np.ndarray, cos: np.ndarray, sin: np.ndarray, layout: str, *,
                 sign_a: float = 1.0, sign_b: float = -1.0) -> np.ndarray:
    """The backward written plainly: da = da' cos + sign_a db' sin, db = db' cos + sign_b
    da' sin on `layout`'s pairs. (1, -1) is R(-θ), right; (-1, 1) is R(+θ), the forward."""
    out = np.empty_like(dout)
    half = dout.shape[-1] // 2
    if layout == "halves":
        a, b, out_a, out_b = (dout[..., :half], dout[..., half:], out[..., :half],
                              out[..., half:])
    else:
        a, b, out_a, out_b = dout[..., 0::2], dout[..., 1::2], out[..., 0::2], out[..., 1::2]
    out_a[...] = a * cos + sign_a * b * sin
    out_b[...] = b * cos + sign_b * a * sin
    return out


def _rope_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    cos, sin, layout = cache
    other = OTHER_LAYOUT[layout]
    pairs = f"this case's layout is {layout!r}, pairs {PAIRS[layout]}"
    return [
        Mistake(0, "turned by +θ (the forward again): the backward multiplies by Rᵀ = R(-θ), "
                   "the forward with sin negated", rope_variant(dout, cos, sin, layout,
                                                                sign_a=-1.0, sign_b=1.0)),
        Mistake(0, f"the pair layout is mixed up: {pairs}, not {PAIRS[other]} ({other!r})",
                rope_variant(dout, cos, sin, other)),
        Mistake(0, f"turned by +θ and the pair layout mixed up: R(-θ) negates sin, and {pairs}",
                rope_variant(dout, cos, sin, other, sign_a=-1.0, sign_b=1.0)),
        Mistake(0, "only one of the two sin terms changed sign: R(-θ) gives da = da' cos + "
                   "db' sin and db = db' cos - da' sin",
                rope_variant(dout, cos, sin, layout, sign_a=1.0, sign_b=1.0)),
        Mistake(0, "only one of the two sin terms changed sign: R(-θ) gives da = da' cos + "
                   "db' sin and db = db' cos - da' sin",
                rope_variant(dout, cos, sin, layout, sign_a=-1.0, sign_b=-1.0)),
        Mistake(0, "dout passed through unturned: RoPE's Jacobian is the rotation itself, so "
                   "dx = R(-θ) dout", dout.copy()),
    ]


ROPE = Exercise(
    "rope", "rotary position embeddings (RoPE)", "10b. RoPE: the backward is the rotation by -θ",
    "rope_forward", "rope_backward", ("dx",), _rope_cases,
    lambda c: [c.tensors["x"], c.static["cos"], c.static["sin"], c.static["layout"]],
    rope_forward, lambda d, c: (rope_backward(d, c),), _rope_mistakes)


# ---------------------------------------------------------------------------- SwiGLU

def _swiglu_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(f"B={B} T={T} F={F}", {"g": 2 * rng.standard_normal((B, T, F)),
                                         "u": rng.standard_normal((B, T, F))},
                 dims={"B": B, "T": T, "F": F})
            for B, T, F in ((2, 3, 4), (1, 1, 5), (3, 2, 6))]


def _swiglu_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    g, u = case.tensors["g"], case.tensors["u"]
    s = 1 / (1 + np.exp(-g))
    return [
        Mistake(0, "dg dropped the gate's path through sigmoid: silu(g) = g σ(g) has g in "
                   "both factors, so silu'(g) = σ + g σ (1 - σ)", dout * u * s),
        Mistake(0, "dg has only the path through σ(g): silu(g) = g σ(g), add σ(g) "
                   "(the product rule's other term)", dout * u * g * s * (1 - s)),
        Mistake(0, "dg forgot the up path's factor u: out = silu(g) * u, so dg = dout * u * "
                   "silu'(g)", dout * s * (1 + g * (1 - s))),
        Mistake(0, "dg is missing dout (the chain rule)", u * s * (1 + g * (1 - s))),
        Mistake(1, "du used σ(g) where silu(g) = g σ(g) multiplies u", dout * s),
        Mistake(1, "du used g where silu(g) = g σ(g) multiplies u", dout * g),
    ]


SWIGLU = Exercise(
    "swiglu", "SwiGLU's gate silu(g) * u (Llama's MLP)", "10c. SwiGLU: the gate's two paths",
    "swiglu_forward", "swiglu_backward", ("dg", "du"), _swiglu_cases,
    lambda c: [c.tensors["g"], c.tensors["u"]], swiglu_forward, swiglu_backward,
    _swiglu_mistakes)


# ---------------------------------------------------------------------------- GQA

def _gqa_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, NH, KV, hs in ((2, 3, 4, 2, 5), (1, 1, 2, 1, 4), (1, 4, 6, 2, 3)):
        D = (NH + 2 * KV) * hs
        G = NH // KV
        c = Case(f"B={B} T={T} NH={NH} KV={KV} hs={hs}",
                 {"qkv": rng.standard_normal((B, T, D))}, {"n_head": NH, "n_kv_head": KV},
                 {"B": B, "T": T, "C": NH * hs, "(NH+2KV)hs": D},
                 part_sizes=(NH * hs, KV * hs, KV * hs))
        c.factors = {"1/G": (1 / G, f"averaged over the group: K/V head j is used by G = {G} "
                                    "query heads, so its gradient is their sum"),
                     "sqrt(hs)": (np.sqrt(hs), "the 1/sqrt(hs) of S = q kᵀ/√hs is missing")}
        if G > 1:
            c.factors["G"] = (G, f"G = {G} times too large: each query head counted once per "
                                 "group member")
        cases.append(c)
    return cases


def gqa_variant(dout: np.ndarray, cache: Any, *, reduce: str = "sum",
                groups: str = "consecutive") -> np.ndarray:
    """GQA's backward written plainly (K and V repeated per query head, as the learner's file
    does), with a known mistake switched on: reduce "sum" (right) | "first" | "last" (a K/V
    gradient from one query head of its group); groups "consecutive" (right: head h reads
    K/V head h // G) | "strided" (h % KV)."""
    q, k, v, P, _, scale, _ = cache
    B, NH, T, hs = q.shape
    KV = k.shape[1]
    G = NH // KV
    of_head = np.arange(NH) // G  # the K/V head each query head reads
    kr, vr = k[:, of_head], v[:, of_head]  # (B, NH, T, hs)
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    dP = dy @ vr.swapaxes(-1, -2)
    dS = P * (dP - (dP * P).sum(-1, keepdims=True))
    dq = dS @ kr * scale
    dk_h, dv_h = dS.swapaxes(-1, -2) @ q * scale, P.swapaxes(-1, -2) @ dy  # per query head
    members = [np.flatnonzero((of_head if groups == "consecutive" else np.arange(NH) % KV)
                              == j) for j in range(KV)]
    pick = {"sum": lambda z, m: z[:, m].sum(1), "first": lambda z, m: z[:, m[0]],
            "last": lambda z, m: z[:, m[-1]]}[reduce]
    dk = np.stack([pick(dk_h, m) for m in members], axis=1)  # (B, KV, T, hs)
    dv = np.stack([pick(dv_h, m) for m in members], axis=1)

    def merge(z: np.ndarray) -> np.ndarray:
        return z.transpose(0, 2, 1, 3).reshape(B, T, -1)

    return np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)


def _gqa_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    one = ("dk and dv taken from one query head ({}) instead of summed over its group: "
           "K/V head j is read by the G query heads of group j, so dk_j, dv_j = Σ_g over them")
    return [
        Mistake(0, one.format("the first of each group"), gqa_variant(dout, cache,
                                                                      reduce="first")),
        Mistake(0, one.format("the last of each group: an = where += was needed?"),
                gqa_variant(dout, cache, reduce="last")),
        Mistake(0, "summed the wrong query heads: query head h reads K/V head h // G "
                   "(consecutive heads share one, as np.repeat), not h % KV",
                gqa_variant(dout, cache, groups="strided")),
    ]


GQA = Exercise(
    "gqa", "grouped-query attention (shared K/V heads)",
    "10d. Grouped-query attention: a shared head's gradient is a sum", "gqa_forward",
    "gqa_backward", ("dqkv",), _gqa_cases,
    lambda c: [c.tensors["qkv"], c.static["n_head"], c.static["n_kv_head"]],
    lambda qkv, n_head, n_kv_head: attention_forward(qkv, n_head, n_kv_head=n_kv_head),
    lambda d, c: (attention_backward(d, c),), _gqa_mistakes, parts=("q", "k", "v"))


LLAMA_LAYER_EXERCISES = {e.name: e for e in (RMSNORM, ROPE, SWIGLU, GQA)}
