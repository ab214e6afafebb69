"""Softmax cross-entropy over the vocabulary, with PyTorch's semantics.

    loss = mean over the non-ignored positions of  -sum_c q_c log p_c,   p = softmax(logits)
    q = (1 - eps) onehot(target) + eps / V        (label smoothing; eps = 0 gives plain NLL)

Targets equal to ignore_index (-100) contribute neither to the loss nor to the count, exactly
as F.cross_entropy(..., ignore_index=-100, label_smoothing=eps). With no target left the
loss is NaN, as in PyTorch.

Ref: Szegedy et al. 2016 (label smoothing); llm.c crossentropy_softmax_backward.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..device import get_array_module

IGNORE_INDEX = -100


class CrossEntropyCache(NamedTuple):
    probs: np.ndarray  # (N, V) softmax(logits), rows flattened
    targets: np.ndarray  # (N,) int target ids
    valid: np.ndarray  # (N,) bool, target != ignore_index
    n_valid: int  # number of counted positions
    label_smoothing: float
    shape: tuple[int, ...]  # the logits' shape, (B, T, V)


def cross_entropy_forward(
    logits: np.ndarray,
    targets: np.ndarray,
    label_smoothing: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[float, CrossEntropyCache]:
    """Shapes: logits (B,T,V), targets (B,T) int -> loss (a Python float)."""
    xp = get_array_module(logits)
    V = logits.shape[-1]
    z = logits.reshape(-1, V) - logits.reshape(-1, V).max(axis=-1, keepdims=True)  # (N, V)
    t = targets.reshape(-1)
    valid = t != ignore_index
    n_valid = int(valid.sum())
    probs = xp.exp(z)
    sum_exp = probs.sum(axis=-1, keepdims=True)  # (N, 1)
    probs /= sum_exp
    log_sum = xp.log(sum_exp[:, 0])  # (N,) so that log p_c = z_c - log_sum

    rows = xp.flatnonzero(valid)
    nll = log_sum[rows] - z[rows, t[rows]]  # -log p_target per counted row
    loss = nll.sum(dtype=np.float64)
    if label_smoothing > 0.0:
        # -mean_c log p_c = log_sum - mean_c z_c for each counted row
        smooth = (log_sum - z.mean(axis=-1))[rows]
        loss = (1.0 - label_smoothing) * loss + label_smoothing * smooth.sum(dtype=np.float64)
    loss = loss / n_valid if n_valid > 0 else float("nan")
    cache = CrossEntropyCache(probs, t, valid, n_valid, label_smoothing, logits.shape)
    return float(loss), cache


def cross_entropy_backward(cache: CrossEntropyCache, dloss: float = 1.0) -> np.ndarray:
    """Backward of the mean smoothed cross-entropy wrt the logits.

    Shapes: -> dlogits (B,T,V)
    Math:   dlogits[n] = (p[n] - q[n]) * dloss / n_valid  for counted rows, 0 for ignored rows
            with q = (1 - eps) onehot + eps / V (d/dz of -sum q log softmax(z) is p - q)
    """
    probs, t, valid, n_valid, eps, shape = cache
    xp = get_array_module(probs)
    V = probs.shape[-1]
    if n_valid == 0:
        return xp.zeros(shape, dtype=probs.dtype)
    dlogits = probs.copy()  # (N, V): p
    if eps > 0.0:
        dlogits -= eps / V  # p - eps/V
    rows = xp.flatnonzero(valid)
    dlogits[rows, t[rows]] -= 1.0 - eps  # p - q on the target column
    if n_valid < len(t):
        dlogits[~valid] = 0.0  # ignored positions pass no gradient
    dlogits *= dloss / n_valid
    return dlogits.reshape(shape)
