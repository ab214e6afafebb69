"""Causal multi-head self-attention core: from fused q,k,v to the re-merged heads.

The surrounding projections (c_attn before, c_proj after) are plain Linear layers, composed
in model.py, as llm.c splits them. Per head h, with hs = C // NH:

    S = q k^T / sqrt(hs)            scores, (T, T)
    S[i, j] = -inf for j > i        causal mask: position i sees only positions <= i
    P = softmax(S) along j          attention weights
    Pd = P * mask / (1 - p)         attention dropout (train mode only)
    y = Pd v                        (T, hs), then heads are concatenated back to (T, C)

All heads and batch rows go through one batched matmul each (no Python loops). q, k, v are
strided views into the fused qkv array, which BLAS reads without copying.

Grouped-query attention (GQA, n_kv_head = KV < NH): qkv holds NH query heads and KV key and
value heads, ((NH + 2 KV) hs) columns; query head h reads key/value head h // G, G = NH / KV
(Hugging Face's repeat_kv order). The query heads are viewed by group, (B, KV, G, T, hs), and
each K/V head is broadcast over its group, never copied (STYLE.md 5b L2). In the backward a
K/V head feeds G query heads, so its dK and dV are the sums over the group (sum_group).
KV = NH is plain multi-head attention (G = 1), KV = 1 multi-query attention.

This file keeps P, (B, NH, T, T), for the backward: the readable way, with memory quadratic in
T. flash_attention.py computes the same function in tiles with O(T) memory (FlashAttention's
online softmax and recomputing backward); GPTConfig.attention chooses between them.

Ref: Vaswani et al. 2017; nanoGPT CausalSelfAttention; llm.c attention_forward/backward;
     Ainslie et al. 2023, "GQA"; Shazeer 2019, "Fast Transformer Decoding" (multi-query).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ..device import get_array_module


class AttentionCache(NamedTuple):
    q: np.ndarray  # (B, NH, T, hs) view into qkv
    k: np.ndarray  # (B, KV, T, hs) view into qkv
    v: np.ndarray  # (B, KV, T, hs) view into qkv
    att: np.ndarray  # (B, NH, T, T) softmax probabilities P, before dropout
    mask: np.ndarray | None  # (B, NH, T, T) bool dropout keep-mask, or None
    scale: float  # 1 / sqrt(hs)
    drop_scale: float  # 1 / (1 - p)


def split_heads(qkv: np.ndarray, n_head: int, n_kv_head: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, T, (NH + 2 KV) hs) -> q (B, NH, T, hs), k, v (B, KV, T, hs): strided views (no
    copy). KV = n_kv_head, default NH: (B, T, 3C) -> 3 x (B, NH, T, hs)."""
    KV = n_head if n_kv_head is None else n_kv_head
    B, T, D = qkv.shape
    hs = D // (n_head + 2 * KV)
    heads = qkv.reshape(B, T, n_head + 2 * KV, hs).transpose(0, 2, 1, 3)  # (B, NH+2KV, T, hs)
    return heads[:, :n_head], heads[:, n_head:n_head + KV], heads[:, n_head + KV:]


def by_group(x: np.ndarray, n_kv_head: int) -> np.ndarray:
    """(B, NH, ...) -> (B, KV, G, ...) view: query head h = j G + g reads K/V head j."""
    return x.reshape(x.shape[0], n_kv_head, x.shape[1] // n_kv_head, *x.shape[2:])


def sum_group(x: np.ndarray) -> np.ndarray:
    """(B, KV, G, ...) -> (B, KV, ...): a K/V head's gradient is the sum over the G query heads
    of its group (its fan-out); with G = 1 the one term, as a view."""
    return x[:, :, 0] if x.shape[2] == 1 else x.sum(axis=2)


@functools.lru_cache(maxsize=16)
def causal_bias(T: int, dtype: np.dtype, xp=np) -> np.ndarray:
    """(T, T) additive mask: 0 on and below the diagonal, -inf above (future positions).

    Built on the host, then placed on xp's device. Cached per (T, dtype, xp): every layer and
    step shares one array, which nothing writes to.
    """
    bias = np.zeros((T, T), dtype=dtype)
    bias[np.triu_indices(T, k=1)] = -np.inf
    bias.flags.writeable = False
    return bias if xp is np else xp.asarray(bias)


def attention_forward(
    qkv: np.ndarray, n_head: int, attn_mask: np.ndarray | None = None, p: float = 0.0,
    n_kv_head: int | None = None,
) -> tuple[np.ndarray, AttentionCache]:
    """Shapes: qkv (B,T,(NH+2KV)hs) (KV = n_kv_head, default NH: (B,T,3C)), attn_mask
    (B,NH,T,T) bool or None -> out (B,T,C)."""
    xp = get_array_module(qkv)  # numpy, or cupy on a GPU (numpy_gpt/nn/device.py)
    q, k, v = split_heads(qkv, n_head, n_kv_head)  # (B,NH,T,hs), 2 x (B,KV,T,hs)
    B, NH, T, hs = q.shape
    KV = k.shape[1]
    scale = 1.0 / math.sqrt(hs)

    # S = (q * scale) k^T: scaling q touches T*hs values per head, not T*T (a temporary).
    # Query heads by group, each K/V head broadcast over its G query heads (no copy)
    att = by_group(q * scale, KV) @ k[:, :, None].swapaxes(-1, -2)
    att = att.reshape(B, NH, T, T)  # (B,KV,G,T,hs) @ (B,KV,1,hs,T) -> (B,KV,G,T,T), a view
    att += causal_bias(T, att.dtype, xp)  # masked scores become -inf, so exp() gives exactly 0
    # softmax along the last axis, in place; subtracting the row max avoids overflow
    att -= att.max(axis=-1, keepdims=True)
    xp.exp(att, out=att)
    # the row sums as a matrix-vector product with ones: BLAS's gemv adds up the T values of
    # every row 3-5x faster than att.sum(axis=-1)
    att /= (att @ xp.ones(T, dtype=att.dtype))[..., None]

    drop_scale = 1.0
    att_d = att
    if attn_mask is not None and p > 0.0:
        drop_scale = 1.0 / (1.0 - p)
        att_d = att * attn_mask
        att_d *= drop_scale
    else:
        attn_mask = None

    # y = Pd @ v, written straight into the merged-heads layout (B,T,NH,hs) = (B,T,C):
    # the (B,NH,T,hs) view of `out` has unit stride along hs, so BLAS fills it without a copy
    out = xp.empty((B, T, NH, hs), dtype=qkv.dtype)
    xp.matmul(by_group(att_d, KV), v[:, :, None], out=by_group(out.transpose(0, 2, 1, 3), KV))
    return out.reshape(B, T, NH * hs), AttentionCache(q, k, v, att, attn_mask, scale, drop_scale)


def attention_backward(dout: np.ndarray, cache: AttentionCache) -> np.ndarray:
    """Backward of the attention core, from the merged heads back to the fused qkv.

    Shapes: dout (B,T,C) -> dqkv (B,T,(NH+2KV)hs)
    Math:   dy = dout split into heads;  Pd = P * mask * drop_scale (or P)
            dv = Pd^T dy;  dPd = dy v^T;  dP = dPd * mask * drop_scale (or dPd)
            dS = P * (dP - rowsum(dP * P))        softmax backward (Jacobian diag(P) - P P^T)
            S = (q k^T) * scale:  dk = (dS^T q) * scale;  dq = (dS k) * scale
            GQA: dk_j, dv_j = sum over the G query heads of group j of the above
            (masked entries have P = 0, so dS = 0 there: the mask needs no backward)
    Ref:    llm.c attention_backward; Ainslie et al. 2023.
    """
    q, k, v, att, mask, scale, drop_scale = cache
    xp = get_array_module(dout)
    B, NH, T, hs = q.shape
    KV = k.shape[1]
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)  # (B,T,C) -> (B,NH,T,hs), a view

    att_d = att if mask is None else att * mask * drop_scale  # recomputed, not cached
    dqkv = xp.empty((B, T, (NH + 2 * KV) * hs), dtype=dout.dtype)
    dq, dk, dv = split_heads(dqkv, NH, KV)  # views: the lines below write straight into dqkv
    # forward: y = Pd @ v, v broadcast over the group: dv sums the group's G query heads
    dv[...] = sum_group(by_group(att_d, KV).swapaxes(-1, -2) @ by_group(dy, KV))

    datt = by_group(dy, KV) @ v[:, :, None].swapaxes(-1, -2)  # (B,KV,G,T,hs)@(B,KV,1,hs,T)
    datt = datt.reshape(B, NH, T, T)  # (B,KV,G,T,T) -> (B,NH,T,T), a view
    if mask is not None:  # forward: Pd = P * mask * drop_scale
        datt *= mask
        datt *= drop_scale
    # forward: P = softmax(S). dS = P * (dP - sum_j dP*P), computed in datt's buffer
    datt -= xp.einsum("bhij,bhij->bhi", datt, att)[..., None]
    datt *= att
    # forward: S = (q @ k^T) * scale; scaling the (T, hs) results, not the (T, T) dS.
    # k is broadcast over the group: dk sums the group's G query heads
    datt = by_group(datt, KV)  # (B,KV,G,T,T) view
    dk[...] = sum_group(datt.swapaxes(-1, -2) @ by_group(q, KV))
    xp.matmul(datt, k[:, :, None], out=by_group(dq, KV))
    dk *= scale
    dq *= scale
    return dqkv
