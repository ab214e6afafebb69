"""Rotary position embeddings (RoPE): positions turn q and k, pair by pair. Llama's positions.

A head vector of size hs is hs/2 pairs (a, b); pair i at position pos turns by the angle
pos * theta^(-2i/hs) (theta = GPTConfig.rope_theta, 10000 in Llama):

    a' = a cos - b sin          the 2-D rotation R(angle) of (a, b)
    b' = b cos + a sin

Rotating q_m at position m and k_n at n makes q_m . k_n depend on m - n only, so attention
sees relative positions, and there is no position table to learn (no wpe). v is not turned.

Which coordinates form a pair is the layout (STYLE.md 5b L1), and the two are different
models with the same weights:
    "halves"       (x[i], x[i + hs/2])   Hugging Face / GPT-NeoX `rotate_half`
    "interleaved"  (x[2i], x[2i + 1])    Meta's original and llama2.c (complex pairs)

The backward has no cache to speak of: a rotation is orthogonal, so its transpose is its
inverse, the rotation by -angle (cos the same, sin negated). Positions are a table row per
position, so the KV cache's offset (and batched decoding's per-row positions) only choose
which rows of cos and sin are used, in forward and backward alike.

Deliberately omits: RoPE scaling (linear, NTK, YaRN, Llama 3's), partial rotary dims.

Ref: Su et al. 2021, "RoFormer" (eq. 34); llama2.c model.py (precompute_freqs_cis once,
     apply_rotary_emb); Hugging Face modeling_llama.py (rotate_half, apply_rotary_pos_emb).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from ..device import get_array_module


class RopeCache(NamedTuple):
    cos: np.ndarray  # (..., hs/2) the forward's cos rows, broadcastable against x's pairs
    sin: np.ndarray  # (..., hs/2) the forward's sin rows
    layout: str  # "halves" | "interleaved"


@functools.lru_cache(maxsize=16)
def rope_tables(T: int, hs: int, theta: float, dtype: np.dtype, xp: Any = np
                ) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin), each (T, hs/2): row pos, column i holds cos/sin(pos * theta^(-2i/hs)).

    Computed once per (T, hs, theta, dtype, xp) in float64 on the host, then cast and placed
    on xp's device; every layer and step shares them (read-only), as causal_bias is shared.
    The same table serves both layouts: only which coordinates pair up differs.
    """
    inv_freq = 1.0 / theta ** (np.arange(0, hs, 2, dtype=np.float64) / hs)  # (hs/2,)
    angles = np.outer(np.arange(T, dtype=np.float64), inv_freq)  # (T, hs/2): pos * freq_i
    tables = []
    for table in (np.cos(angles), np.sin(angles)):
        table = table.astype(dtype)
        table.flags.writeable = False
        tables.append(table if xp is np else xp.asarray(table))
    return tables[0], tables[1]


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, layout: str
                 ) -> tuple[np.ndarray, RopeCache]:
    """Shapes: x (..., hs); cos, sin broadcastable against (..., hs/2), e.g. rows
    offset..offset+T of rope_tables as (T, 1, hs/2) for x (B, T, H, hs) -> out (..., hs)."""
    return _rotate(x, cos, sin, layout), RopeCache(cos, sin, layout)


def rope_backward(dout: np.ndarray, cache: RopeCache) -> np.ndarray:
    """Backward of out = R(angle) x, pair by pair.

    Shapes: dout (..., hs) -> dx (..., hs)
    Math:   [a'; b'] = [[cos, -sin], [sin, cos]] [a; b]  ->  [da; db] = R^T [da'; db']
            R^T = R(-angle):  da = da' cos + db' sin;  db = db' cos - da' sin
            (the forward with sin negated; the same pairs and positions as the forward)
    Ref:    Su et al. 2021 (R is orthogonal).
    """
    cos, sin, layout = cache
    return _rotate(dout, cos, -sin, layout)


def qk_heads(qkv: np.ndarray, n_head: int, n_kv_head: int) -> np.ndarray:
    """The q and k heads of a fused qkv (B, T, (NH + 2 KV) hs) as one (B, T, NH + KV, hs) view:
    what RoPE turns (v is not turned). Writing into it writes into qkv."""
    B, T, D = qkv.shape
    H = n_head + 2 * n_kv_head
    return qkv.reshape(B, T, H, D // H)[:, :, :n_head + n_kv_head]


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, layout: str) -> np.ndarray:
    """(a, b) -> (a cos - b sin, b cos + a sin) for every pair of `layout`, in a fresh array."""
    xp = get_array_module(x)
    out = xp.empty(x.shape, dtype=x.dtype)
    half = x.shape[-1] // 2
    if layout == "halves":  # pair i = (x[i], x[i + hs/2])
        a, b, out_a, out_b = x[..., :half], x[..., half:], out[..., :half], out[..., half:]
    else:  # "interleaved": pair i = (x[2i], x[2i + 1])
        a, b, out_a, out_b = x[..., 0::2], x[..., 1::2], out[..., 0::2], out[..., 1::2]
    xp.multiply(a, cos, out=out_a)
    out_a -= b * sin
    xp.multiply(b, cos, out=out_b)
    out_b += a * sin
    return out
