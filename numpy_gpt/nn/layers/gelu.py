"""GELU, in its two variants: name the variant (STYLE.md N6).

- gelu_tanh: GPT-2's approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  PyTorch: F.gelu(x, approximate="tanh").
- gelu_exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), as nanoGPT's nn.GELU().
  PyTorch: F.gelu(x). NumPy has no erf. float64 uses scipy.special.erf (cupyx's on a GPU;
  exact to double precision, which parity needs); float32 uses Abramowitz & Stegun 7.1.26,
  |error| < 1.5e-7 (float32 resolves ~6e-8 near 1), about 10x faster than scipy's float32
  erf, on either device.

Ref: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"; llm.c gelu_forward/backward.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..device import erf, get_array_module

# Python floats, not NumPy scalars: a np.float64 constant would silently upcast float32 arrays.
GELU_SCALE = math.sqrt(2.0 / math.pi)  # sqrt(2/pi)
GELU_COEF = 0.044715
INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GeluTanhCache(NamedTuple):
    x: np.ndarray  # (...) the input; tanh(u) is recomputed in backward (as PyTorch does),
    #                which keeps one (B,T,4C) array per layer out of memory for one tanh
    h: np.ndarray | None = None  # (...) h = 0.5 (1 + tanh(u)), when gelu_recompute built it


def _half_one_plus_tanh_u(x: np.ndarray) -> np.ndarray:
    """h = 0.5 (1 + tanh(u)), u = s (x + a x^3), built in one fresh buffer.

    Speed: every line is one pass over a (B,T,4C) array, and elementwise passes, not the
    arithmetic, are what GELU costs in NumPy. Writing u = x (s + s a x^2) folds s into the
    constants (4 passes for u instead of 5); h is what both the output (y = x h) and the
    derivative below are written with.
    """
    h = x * x
    h *= GELU_SCALE * GELU_COEF  # s a x^2
    h += GELU_SCALE  # s (1 + a x^2)
    h *= x  # u
    get_array_module(h).tanh(h, out=h)  # t = tanh(u)
    h *= 0.5
    h += 0.5  # h = 0.5 (1 + t)
    return h


def gelu_tanh_forward(x: np.ndarray) -> tuple[np.ndarray, GeluTanhCache]:
    """Shapes: x (...) -> out (...)."""
    out = _half_one_plus_tanh_u(x)
    out *= x  # y = 0.5 x (1 + t) = x h, in h's buffer
    return out, GeluTanhCache(x)


def gelu_tanh_backward(dout: np.ndarray, cache: GeluTanhCache) -> np.ndarray:
    """Backward of y = 0.5 x (1 + t), t = tanh(u), u = s (x + a x^3), s = sqrt(2/pi), a = 0.044715.

    Shapes: dout (...) -> dx (...)
    Math:   dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,   du/dx = s (1 + 3a x^2)
            with h = 0.5 (1 + t):  0.5 (1 - t^2) = 0.5 (1 + t)(1 - t) = 2 h (1 - h), so
            dy/dx = h (1 + (1 - h) 2x du/dx);   dx = dout * dy/dx
    Ref:    llm.c gelu_backward (the same derivative, written with sech^2 = 1 - tanh^2).
    """
    x = cache.x
    h = _half_one_plus_tanh_u(x) if cache.h is None else cache.h  # recomputed from the forward
    dx = x * x  # 2x du/dx = x (2s + 6 s a x^2)
    dx *= 6.0 * GELU_SCALE * GELU_COEF
    dx += 2.0 * GELU_SCALE
    dx *= x
    dx -= dx * h  # (1 - h) 2x du/dx
    dx += 1.0
    dx *= h  # dy/dx = h (1 + (1 - h) 2x du/dx)
    dx *= dout
    return dx


def gelu_recompute(cache: GeluTanhCache | GeluExactCache) -> tuple[np.ndarray, Any]:
    """The forward's output again, from its cache: (out, cache for the backward).

    The GELU output is the largest activation of a block ((B,T,4C), like its input). The
    model does not keep it for mlp.c_proj's weight gradient; it rebuilds it here in backward
    (llm.c's "recompute" option). The tanh variant returns h = 0.5 (1 + tanh(u)) in the
    cache, so the GELU backward that follows does not compute it a second time: the rebuild
    costs one elementwise operation. Same values as the forward, bit for bit (the same
    operations in order).
    """
    if isinstance(cache, GeluExactCache):
        return cache.x * cache.phi, cache
    h = _half_one_plus_tanh_u(cache.x)
    return cache.x * h, cache._replace(h=h)  # y = x h, as gelu_tanh_forward


class GeluExactCache(NamedTuple):
    x: np.ndarray  # (...) the input
    phi: np.ndarray  # (...) Phi(x) = 0.5 (1 + erf(x / sqrt(2))), the normal CDF


def gelu_exact_forward(x: np.ndarray) -> tuple[np.ndarray, GeluExactCache]:
    """Shapes: x (...) -> out (...)."""
    phi = _erf(x * INV_SQRT2)
    phi += 1.0
    phi *= 0.5
    return x * phi, GeluExactCache(x, phi)


def gelu_exact_backward(dout: np.ndarray, cache: GeluExactCache) -> np.ndarray:
    """Backward of y = x Phi(x).

    Shapes: dout (...) -> dx (...)
    Math:   dy/dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2/2) / sqrt(2 pi) (the normal density)
            dx = dout * dy/dx
    """
    x, phi_cdf = cache
    dx = x * x
    dx *= -0.5
    get_array_module(dx).exp(dx, out=dx)
    dx *= INV_SQRT_2PI
    dx *= x
    dx += phi_cdf
    dx *= dout
    return dx


def _erf(z: np.ndarray) -> np.ndarray:
    # float64: scipy's (or on a GPU cupyx's) erf; float32: the polynomial below, on any device
    return erf(z) if z.dtype == np.float64 else _erf_float32(z)


# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf_float32(z: np.ndarray) -> np.ndarray:
    """erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p|z|), odd in z."""
    xp = get_array_module(z)
    az = xp.abs(z)
    t = az * _AS_P
    t += 1.0
    xp.reciprocal(t, out=t)
    poly = t * _AS_A[4]  # Horner: ((((a5 t + a4) t + a3) t + a2) t + a1) t
    for a in reversed(_AS_A[:4]):
        poly += a
        poly *= t
    xp.square(az, out=az)
    xp.negative(az, out=az)
    xp.exp(az, out=az)  # exp(-z^2)
    poly *= az
    xp.subtract(1.0, poly, out=poly)
    return xp.copysign(poly, z, out=poly)
