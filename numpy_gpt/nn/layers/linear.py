"""Linear layer y = x @ W.T + b, with W stored (out, in) as in PyTorch and llm.c.

(B, T, in) inputs are flattened to (N, in) so each product is one 2-D BLAS gemm call; NumPy
passes the transposed view W.T to BLAS as a flag, without copying it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..device import get_array_module


class LinearCache(NamedTuple):
    x: np.ndarray  # (..., in) the input, by reference
    w: np.ndarray  # (out, in)
    has_bias: bool


def linear_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None
) -> tuple[np.ndarray, LinearCache]:
    """Shapes: x (..., in), w (out, in), b (out,) or None -> out (..., out)."""
    x2 = x.reshape(-1, x.shape[-1])  # (N, in): a view when x is contiguous
    out = x2 @ w.T  # (N, in) @ (in, out) -> (N, out)
    if b is not None:
        out += b
    return out.reshape(*x.shape[:-1], w.shape[0]), LinearCache(x, w, b is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward of y = x @ W.T + b.

    Shapes: dout (..., out) -> dx (..., in), dw (out, in), db (out,) or None
    Math:   dx = dout @ W          (each x feeds every output through W)
            dW = dout.T @ x        (summed over all N rows)
            db = sum_N dout
    Ref:    llm.c matmul_backward.
    """
    x, w, has_bias = cache
    xp = get_array_module(dout)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    dx = (d2 @ w).reshape(x.shape)  # (N, out) @ (out, in) -> (N, in)
    dw = d2.T @ x2  # (out, N) @ (N, in) -> (out, in)
    # sum over rows as ones @ d2: BLAS's gemv sums columns 2x faster than d2.sum(axis=0)
    db = xp.ones(d2.shape[0], dtype=d2.dtype) @ d2 if has_bias else None
    return dx, dw, db
