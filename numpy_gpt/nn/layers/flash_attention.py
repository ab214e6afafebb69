"""Tiled causal self-attention (FlashAttention's algorithm, in NumPy): exact, memory linear in T.

The same function as attention.py (read that file first: it is the readable version), computed
without ever holding the (T, T) probability matrix. Queries and keys/values are cut into tiles
of `tile` rows; the forward holds one (tile, tile) block of scores at a time, the backward one
(strip, tile) block, for all B*NH heads at once (batched matmuls, so Python loops run only over
tiles).

Forward, per query tile, visiting key tiles left to right ("online softmax"). For each row i:

    m   running max of the scores seen so far        l   running sum of exp(S - m)
    acc running sum of exp(S - m) v                  (acc / l is the output so far)
    a new key tile with scores s:  m' = max(m, max_j s_j)
                                   l   = l e^(m - m') + sum_j e^(s_j - m')
                                   acc = acc e^(m - m') + sum_j e^(s_j - m') v_j

  Why the rescaling is exact: every term kept in l and acc was e^(S_ij - m) for the m of its
  time; multiplying by e^(m - m') turns it into e^(S_ij - m'), exactly what it would have been
  had m' been known from the start. So after the last tile l = sum_j e^(S_ij - M) and
  acc = sum_j e^(S_ij - M) v_j with M the row's true max: y_i = acc / l is softmax(S_i) V,
  the same algebra as the full softmax (only the rounding order differs). The forward keeps
  y and one log-sum-exp per row, lse_i = M + log l = log sum_j e^(S_ij): O(T) extra memory.

Backward, per key tile, over the query rows at or below it in strips of STRIP_ROWS rows (one
batched matmul per strip rather than per tile: fewer Python steps, and a strip's scores still
fit in cache; about 10-20 % faster than tile pairs at T = 2048 on this project's CPU). With
P_ij = e^(S_ij - lse_i), the probabilities are recomputed exactly from q, k and lse (no
normalisation pass):

    dv_j = sum_i P_ij dy_i            dP_ij = dy_i . v_j
    dS_ij = P_ij (dP_ij - D_i)        D_i = rowsum_j(dP_ij P_ij) = dy_i . y_i
    dq_i = scale sum_j dS_ij k_j      dk_j = scale sum_i dS_ij q_i

  Why D replaces the P-row sum: the softmax backward needs sum_j dP_ij P_ij over the whole row,
  which attention.py reads off the stored P. But dP_ij = dy_i . v_j, so
  sum_j P_ij (dy_i . v_j) = dy_i . (sum_j P_ij v_j) = dy_i . y_i: one dot product per row of
  two (T, hs) arrays the backward has anyway. It is computed once, before the tile loops.

Causality: query and key tiles are aligned (the same cuts), so a pair is wholly above the
diagonal (key tile after query tile: skipped, about half the pairs), on it (the same tile:
masked with -inf above its own diagonal, attention.py's causal_bias) or wholly below it (no
mask). Each row's first key tile holds key 0 <= every query, so the running max
is finite after the first tile (no e^(-inf + inf)).

Grouped-query attention (n_kv_head = KV < NH, attention.py's docstring): the query heads are
held by group, (B, KV, G, T, hs), and each tile of a K/V head is broadcast over its group's G
query heads inside the batched matmuls, never repeated in memory. In the backward, dk_j and
dv_j of a shared head are sums over the G query heads that read it (sum_group), per tile.

Deliberately omits: attention dropout. Dropping P_ij would need the same mask in forward and
backward (FlashAttention regenerates it from the RNG state per tile); the mask both twins
could share is (B, NH, T, T) bools, the memory this layer exists to avoid. GPTConfig refuses
attention="tiled" with dropout > 0, and "auto" falls back to attention.py while dropout is on.

Ref: Dao et al. 2022, "FlashAttention" (Alg. 1-2, and the D_i identity, eq. in App. B.2);
     Dao 2023, "FlashAttention-2" (the loop order used here); Milakov & Gimelshein 2018,
     "Online normalizer calculation for softmax".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..device import get_array_module
from .attention import by_group, causal_bias, split_heads, sum_group

STRIP_ROWS = 256  # query rows per batched matmul in the backward (measured: 256-512 best)


class FlashAttentionCache(NamedTuple):
    q: np.ndarray  # (B, KV, G, T, hs) q * scale, contiguous, query heads by group (G = NH/KV)
    k: np.ndarray  # (B, KV, 1, T, hs) contiguous, broadcast over the group
    v: np.ndarray  # (B, KV, 1, T, hs) contiguous
    out: np.ndarray  # (B, KV, G, T, hs) view of the output y (the forward's return value)
    lse: np.ndarray  # (B, KV, G, T) log sum_j exp(S_ij), one per row
    scale: float  # 1 / sqrt(hs)
    tile: int  # rows per query tile and per key tile


def tiles(T: int, tile: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering 0..T in steps of `tile` (the last one may be shorter)."""
    return [(a, min(a + tile, T)) for a in range(0, T, tile)]


def flash_attention_forward(qkv: np.ndarray, n_head: int, tile: int = 128,
                            n_kv_head: int | None = None
                            ) -> tuple[np.ndarray, FlashAttentionCache]:
    """Shapes: qkv (B,T,(NH+2KV)hs) (KV = n_kv_head, default NH: (B,T,3C)) -> out (B,T,C).
    Equal to attention_forward(qkv, n_head, n_kv_head=n_kv_head) up to rounding; the cache
    holds q, k, v, out and lse: O(T) per head, never (T, T)."""
    xp = get_array_module(qkv)
    q, k, v = split_heads(qkv, n_head, n_kv_head)  # (B,NH,T,hs), 2 x (B,KV,T,hs) views
    B, NH, T, hs = q.shape
    KV = k.shape[1]
    G = NH // KV
    scale = 1.0 / math.sqrt(hs)
    # contiguous copies (O(T C) each): every tile slice is then one dense block for BLAS.
    # Query heads by group (B,KV,G,T,hs); K/V heads (B,KV,1,T,hs), broadcast over the group
    q = by_group(xp.ascontiguousarray(q * scale), KV)  # S = (q * scale) k^T, as attention.py
    k, v = xp.ascontiguousarray(k[:, :, None]), xp.ascontiguousarray(v[:, :, None])
    # y is written straight into the merged-heads layout, as attention.py does
    out = xp.empty((B, T, NH, hs), dtype=qkv.dtype)
    y = by_group(out.transpose(0, 2, 1, 3), KV)  # (B,KV,G,T,hs) view
    lse = xp.empty((B, KV, G, T), dtype=qkv.dtype)
    ones = xp.ones(min(tile, T), dtype=qkv.dtype)
    for q0, q1 in tiles(T, tile):
        qi = q[..., q0:q1, :]  # (B,KV,G,tq,hs)
        m = xp.full((B, KV, G, q1 - q0), -np.inf, dtype=qkv.dtype)  # running max
        l = xp.zeros((B, KV, G, q1 - q0), dtype=qkv.dtype)  # running sum of exp(s - m)
        acc = xp.zeros((B, KV, G, q1 - q0, hs), dtype=qkv.dtype)  # running sum of exp(s-m) v
        for k0, k1 in tiles(T, tile):
            if k0 > q1 - 1:  # every key after every query: wholly masked, skipped
                break
            # (B,KV,G,tq,hs) @ (B,KV,1,hs,tk) -> (B,KV,G,tq,tk): a K/V tile serves its group
            s = qi @ k[..., k0:k1, :].swapaxes(-1, -2)
            if k0 == q0:  # the diagonal tile (q and k tiles are aligned): mask j > i
                s += causal_bias(q1 - q0, s.dtype, xp)
            m_new = xp.maximum(m, s.max(axis=-1))
            alpha = xp.exp(m - m_new)  # e^(m - m'): rescales what l and acc hold so far
            s -= m_new[..., None]
            xp.exp(s, out=s)  # p = e^(s - m'), 0 where masked
            l *= alpha
            l += s @ ones[:k1 - k0]  # row sums by gemv, as attention.py (faster than .sum)
            acc *= alpha[..., None]
            acc += s @ v[..., k0:k1, :]  # (B,KV,G,tq,tk) @ (B,KV,1,tk,hs) -> (.., tq, hs)
            m = m_new
        xp.divide(acc, l[..., None], out=y[..., q0:q1, :])  # y = acc / l
        lse[..., q0:q1] = m + xp.log(l)
    return out.reshape(B, T, NH * hs), FlashAttentionCache(q, k, v, y, lse, scale, tile)


def flash_attention_backward(dout: np.ndarray, cache: FlashAttentionCache) -> np.ndarray:
    """Backward of the tiled attention core, from the merged heads back to the fused qkv.

    Shapes: dout (B,T,C) -> dqkv (B,T,(NH+2KV)hs)
    Math:   P_ij = exp(q_i . k_j * scale - lse_i), recomputed per tile (0 above the diagonal)
            D_i = dy_i . y_i   (= sum_j dP_ij P_ij, since dP_ij = dy_i . v_j)
            dv_j = sum_i P_ij dy_i;  dS_ij = P_ij (dy_i . v_j - D_i)
            dq_i = scale sum_j dS_ij k_j;  dk_j = scale sum_i dS_ij q_i
            GQA: dk_j, dv_j also sum over the G query heads sharing K/V head j
    Ref:    Dao et al. 2022, FlashAttention Alg. 2 / App. B.2; Dao 2023, FlashAttention-2 Alg. 2.
    """
    q, k, v, y, lse, scale, tile = cache
    xp = get_array_module(dout)
    B, KV, G, T, hs = q.shape
    NH = KV * G
    dy = by_group(xp.ascontiguousarray(dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)), KV)
    D = xp.einsum("bjgtd,bjgtd->bjgt", dy, y)  # rowsum(dP * P) without P: (B,KV,G,T)
    dqkv = xp.empty((B, T, (NH + 2 * KV) * hs), dtype=dout.dtype)
    dq, dk, dv = split_heads(dqkv, NH, KV)  # views: everything below writes straight into dqkv
    dq = by_group(dq, KV)  # (B,KV,G,T,hs) view, as q
    dqkv[...] = 0.0  # dq_i sums over key tiles, dk_j and dv_j over strips of query rows
    strip = max(tile, STRIP_ROWS // tile * tile)  # whole tiles: the first holds the diagonal
    for k0, k1 in tiles(T, tile):
        kj, vj = k[..., k0:k1, :], v[..., k0:k1, :]  # (B,KV,1,tk,hs)
        # the query rows at or below key tile j (the tiles above it are skipped), in strips
        # of whole tiles, about STRIP_ROWS rows: one batched matmul per strip instead of per
        # tile (fewer Python steps), short enough that a strip's scores stay in cache
        for s0 in range(k0, T, strip):
            s1 = min(s0 + strip, T)
            qs, dys = q[..., s0:s1, :], dy[..., s0:s1, :]  # (B,KV,G,ts,hs)
            # forward: P = exp(S - lse), S = (q * scale) k^T, masked above the diagonal
            p = qs @ kj.swapaxes(-1, -2)  # (B,KV,G,ts,hs) @ (B,KV,1,hs,tk) -> (B,KV,G,ts,tk)
            if s0 == k0:  # the strip starts with the diagonal tile
                p[..., :k1 - k0, :] += causal_bias(k1 - k0, p.dtype, xp)
            p -= lse[..., s0:s1, None]
            xp.exp(p, out=p)
            # forward: y = P v, the K/V tile shared by the group: dv sums its G query heads
            dv[:, :, k0:k1] += sum_group(p.swapaxes(-1, -2) @ dys)
            dp = dys @ vj.swapaxes(-1, -2)  # (B,KV,G,ts,hs) @ (B,KV,1,hs,tk) -> (..., ts, tk)
            dp -= D[..., s0:s1, None]  # forward: P = softmax(S); dS = P (dP - D)
            dp *= p
            # forward: S = (q * scale) k^T. q holds q*scale already: dk_j = sum_i dS_ij q_i
            # (and over the group) needs no more scaling; dq gets its scale once, at the end
            dk[:, :, k0:k1] += sum_group(dp.swapaxes(-1, -2) @ qs)
            dq[..., s0:s1, :] += dp @ kj
    dq *= scale
    return dqkv
