"""LayerNorm over the last axis: y = w * (x - mean) / sqrt(var + eps) + b.

The variance is the biased one (divide by C), as in PyTorch. The cache keeps the normalized
input n and 1/std; the backward recomputes everything else from them.

Speed: a mean over the C values of each row is written as a matrix-vector product with a
vector of 1/C (`x @ inv_c`), and a sum over the rows as `ones @ x`: the same sums, done by
BLAS's gemv, which is 2-4x faster than NumPy's reductions along an axis of a few hundred
values (float summation order differs, within the parity tolerances).
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
    mean = x @ _inv_c(x)  # (B, T): mean_C x, as a matrix-vector product (module docstring)
    n = x - mean[..., None]  # (B, T, C), fresh: becomes the cached normalized input
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
    dn = dout2 * n.reshape(-1, C)  # (N, C): dout*n, summed two ways below
    ones = xp.ones(dout2.shape[0], dtype=dout.dtype)
    dw = ones @ dn  # sum_BT dout*n (ones @ x: a column sum by gemv, module docstring)
    db = ones @ dout2 if has_bias else None  # sum_BT dout
    g = dout * w  # (B, T, C), the gradient wrt n
    g_mean = (g @ _inv_c(g))[..., None]  # mean_C(g), (B, T, 1)
    gn_mean = (dn @ (w / C)).reshape(g_mean.shape)  # mean_C(g*n) = sum_C (dout*n) w / C
    dx = g  # reuse g's buffer: dx = rstd * (g - g_mean - n * gn_mean)
    dx -= g_mean
    dx -= n * gn_mean
    dx *= rstd
    return dx, dw, db


def _inv_c(x: np.ndarray) -> np.ndarray:
    """(C,) vector of 1/C in x's dtype and device: x @ _inv_c(x) is the mean over the last axis."""
    C = x.shape[-1]
    return get_array_module(x).full(C, 1.0 / C, dtype=x.dtype)
