"""RMSNorm over the last axis: y = w * x / sqrt(mean(x^2) + eps). Llama's norm.

LayerNorm without the mean: no centering and no bias, only a rescale by the root mean square
(PyTorch's nn.RMSNorm, Hugging Face's LlamaRMSNorm). The cache keeps the normalized input n
and 1/rms; the backward is LayerNorm's (layernorm.py) without its centering term.

Deliberately omits: Hugging Face's float32 upcast inside the norm (a half-precision detail;
this twin computes in the model's dtype, float32 or float64, throughout).

Ref: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"; llama2.c model.py RMSNorm.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..device import get_array_module


class RMSNormCache(NamedTuple):
    n: np.ndarray  # (B, T, C) normalized input x * rstd
    rstd: np.ndarray  # (B, T, 1) 1 / sqrt(mean_C(x^2) + eps)
    w: np.ndarray  # (C,) the scale, needed for dn = dout * w


def rmsnorm_forward(x: np.ndarray, w: np.ndarray, eps: float
                    ) -> tuple[np.ndarray, RMSNormCache]:
    """Shapes: x (B,T,C), w (C,) -> out (B,T,C)."""
    xp = get_array_module(x)
    ms = xp.einsum("...c,...c->...", x, x)[..., None] / x.shape[-1]  # mean_C x^2, (B, T, 1)
    rstd = 1.0 / xp.sqrt(ms + eps)
    n = x * rstd  # fresh: becomes the cached normalized input
    return n * w, RMSNormCache(n, rstd, w)


def rmsnorm_backward(dout: np.ndarray, cache: RMSNormCache) -> tuple[np.ndarray, np.ndarray]:
    """Backward of y = w*n, n = x*rstd, rstd = (mean_C(x^2) + eps)^(-1/2).

    Shapes: dout (B,T,C) -> dx (B,T,C), dw (C,)
    Math:   g = dout*w; dw = sum_BT dout*n
            d rstd/dx_c = -rstd^3 x_c / C = -rstd^2 n_c / C   (through the mean of squares)
            dx = rstd * (g - n * mean_C(g*n))
            = layernorm_backward's dx without its "- mean_C(g)" term (no mean was removed)
    Ref:    Zhang & Sennrich 2019 (eq. 5); layernorm.py.
    """
    n, rstd, w = cache
    xp = get_array_module(dout)
    C = n.shape[-1]
    dout2 = dout.reshape(-1, C)
    dn = dout2 * n.reshape(-1, C)  # (N, C): dout*n, summed two ways below
    dw = xp.ones(dout2.shape[0], dtype=dout.dtype) @ dn  # sum_BT dout*n, a gemv column sum
    gn_mean = (dn @ (w / C)).reshape(rstd.shape)  # mean_C(g*n) = sum_C (dout*n) w / C
    dx = dout * w  # g, the gradient wrt n; its buffer becomes dx
    dx -= n * gn_mean  # term through rstd
    dx *= rstd  # direct term and the one above share the factor rstd
    return dx, dw

