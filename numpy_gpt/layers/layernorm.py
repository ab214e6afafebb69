"""LayerNorm over the last axis: y = w * (x - mean) / sqrt(var + eps) + b.

The variance is the biased one (divide by C), as in PyTorch. The cache keeps the normalized
input n and 1/std; the backward recomputes everything else from them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..device import get_array_module


class LayerNormCache(NamedTuple):
    n: np.ndarray  # (B, T, C) normalized input (x - mean) * rstd
    rstd: np.ndarray  # (B, T, 1) 1 / sqrt(var + eps)
    w: np.ndarray  # (C,) the scale, needed for dn = dout * w
    has_bias: bool


def layernorm_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float
) -> tuple[np.ndarray, LayerNormCache]:
    """Shapes: x (B,T,C), w (C,), b (C,) or None -> out (B,T,C)."""
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    n = x - mean  # (B, T, C), fresh: becomes the cached normalized input
    var = xp.einsum("...c,...c->...", n, n)[..., None] / x.shape[-1]  # biased var, (B, T, 1)
    rstd = 1.0 / xp.sqrt(var + eps)
    n *= rstd
    out = n * w
    if b is not None:
        out += b
    return out, LayerNormCache(n, rstd, w, b is not None)


def layernorm_backward(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward of y = w*n + b, n = (x - mu)*rstd.

    Shapes: dout (B,T,C) -> dx (B,T,C), dw (C,), db (C,) or None
    Math:   g = dout*w; db = sum_BT dout; dw = sum_BT dout*n
            dx = rstd * (g - mean_C(g) - n * mean_C(g*n))
            (term 1: direct path; term 2: through mu; term 3: through rstd, as d var/dx = 2(x-mu)/C)
    Ref:    llm.c doc/layernorm/layernorm.md.
    """
    n, rstd, w, has_bias = cache
    xp = get_array_module(dout)
    C = n.shape[-1]
    dout2 = dout.reshape(-1, C)
    dw = xp.einsum("nc,nc->c", dout2, n.reshape(-1, C))  # sum_BT dout*n without a temporary
    db = dout2.sum(axis=0) if has_bias else None
    g = dout * w  # (B, T, C), the gradient wrt n
    g_mean = g.mean(axis=-1, keepdims=True)  # (B, T, 1)
    gn_mean = xp.einsum("...c,...c->...", g, n)[..., None] / C  # mean_C(g*n), (B, T, 1)
    dx = g  # reuse g's buffer: dx = rstd * (g - g_mean - n * gn_mean)
    dx -= g_mean
    dx -= n * gn_mean
    dx *= rstd
    return dx, dw, db
