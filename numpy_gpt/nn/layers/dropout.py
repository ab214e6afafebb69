"""Inverted dropout with an explicit keep-mask: y = x * mask / (1 - p).

The mask is an argument, not drawn here, so the caller owns the randomness (a seeded
np.random.Generator) and the two twins can be handed identical masks. mask=None is the
identity (eval mode, or p = 0).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # bool, same shape as x; True = keep
    scale: float  # 1 / (1 - p)


def dropout_forward(
    x: np.ndarray, mask: np.ndarray | None, p: float
) -> tuple[np.ndarray, DropoutCache]:
    """Shapes: x (...), mask (...) bool or None -> out (...). Kept values are scaled by 1/(1-p).

    Without a mask the layer is the identity and returns x itself (no copy).
    """
    if mask is None or p == 0.0:
        return x, DropoutCache(None, 1.0)
    scale = 1.0 / (1.0 - p)  # a Python float: keeps float32 arrays float32
    out = x * mask
    out *= scale
    return out, DropoutCache(mask, scale)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """Backward of y = x * mask * scale.

    Shapes: dout (...) -> dx (...)
    Math:   dx = dout * mask * scale   (dropped units pass no gradient)
    Without a mask the layer is the identity and dout itself is returned (no copy).
    """
    if cache.mask is None:
        return dout
    dx = dout * cache.mask
    dx *= cache.scale
    return dx
