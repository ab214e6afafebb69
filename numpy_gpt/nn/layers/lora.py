"""LoRA: a trainable low-rank update beside a frozen Linear layer.

    y = x W^T + b  +  s * (dropout(x) A^T) B^T,     A (r, in), B (out, r), s = alpha / r

Only A and B train. B starts at zero, so the adapted model starts equal to the base model;
after training, W + s * B A is the merged weight (no extra cost at inference).

Ref: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"; HF peft LoraLayer
(A ~ Kaiming-uniform, B = 0, dropout on the LoRA input only).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LoRACache(NamedTuple):
    xd: np.ndarray  # (..., in) dropout(x): the LoRA path's input
    h: np.ndarray  # (..., r) xd A^T, the low-rank code
    A: np.ndarray  # (r, in)
    B: np.ndarray  # (out, r)
    mask: np.ndarray | None  # (..., in) bool keep-mask of the LoRA dropout, or None
    scale: float  # alpha / r
    drop_scale: float  # 1 / (1 - p)


def lora_forward(
    x: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float,
    mask: np.ndarray | None = None, p: float = 0.0,
) -> tuple[np.ndarray, LoRACache]:
    """Shapes: x (..., in), A (r, in), B (out, r) -> out (..., out), the update only."""
    drop_scale = 1.0
    if mask is not None and p > 0.0:
        drop_scale = 1.0 / (1.0 - p)
        xd = x * mask
        xd *= drop_scale
    else:
        xd, mask = x, None
    h = xd @ A.T  # (..., in) @ (in, r) -> (..., r)
    out = h @ B.T  # (..., r) @ (r, out) -> (..., out)
    out *= scale
    return out, LoRACache(xd, h, A, B, mask, scale, drop_scale)


def lora_backward(
    dout: np.ndarray, cache: LoRACache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of y = s * (xd A^T) B^T with xd = x * mask * drop_scale.

    Shapes: dout (..., out) -> dx (..., in), dA (r, in), dB (out, r)
    Math:   g = s * dout;  dB = g^T h;  dh = g B;  dA = dh^T xd
            dx = (dh A) * mask * drop_scale   (or dh A without dropout)
    """
    xd, h, A, B, mask, scale, drop_scale = cache
    g = (dout * scale).reshape(-1, dout.shape[-1])  # (N, out)
    h2 = h.reshape(-1, h.shape[-1])  # (N, r)
    dB = g.T @ h2  # forward: out = h @ B^T      -> (out, r)
    dh = g @ B  # (N, r)
    dA = dh.T @ xd.reshape(-1, xd.shape[-1])  # forward: h = xd @ A^T -> (r, in)
    dx = (dh @ A).reshape(xd.shape)  # (N, in)
    if mask is not None:  # forward: xd = x * mask * drop_scale
        dx *= mask
        dx *= drop_scale
    return dx, dA, dB
