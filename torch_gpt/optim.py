"""AdamW with nanoGPT's two parameter groups, gradient clipping and the lr schedule.

    opt = configure_optimizer(model, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    for it in range(max_iters):
        set_lr(opt, get_lr(it, learning_rate=6e-4, warmup_iters=100, lr_decay_iters=5000,
                           min_lr=6e-5))
        ... loss / n_micro .backward() per micro-batch ...
        clip_grad_norm(model, 1.0); opt.step(); opt.zero_grad(set_to_none=True)

Only weights with ndim >= 2 (matmul weights and embeddings) decay; biases and LayerNorm
gains do not, exactly as numpy_gpt.nn.optim.AdamW decides. The schedule is numpy_gpt's own
get_lr, a framework-free scalar function (STYLE.md L2 allows sharing it; it is not model math).

Ref: nanoGPT model.py configure_optimizers, train.py get_lr; Loshchilov & Hutter 2019.
"""

from __future__ import annotations

import torch
from torch import nn

from numpy_gpt.nn.optim import get_lr

__all__ = ["clip_grad_norm", "configure_optimizer", "get_lr", "param_groups", "set_lr"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's groups: tensors with ndim >= 2 decay, the rest (biases, LN) do not.

    A tied weight is one Parameter and appears once (named_parameters deduplicates).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def configure_optimizer(
    model: nn.Module,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.1,
    eps: float = 1e-8,
    *,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """torch.optim.AdamW over param_groups(model). fused=None keeps PyTorch's default
    (foreach on CUDA, the single-tensor loop on CPU); fused=True is faster on CUDA."""
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every group (the schedule's value for this iteration)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """Scale all gradients so that their global L2 norm is <= max_norm; returns the norm
    before clipping. coef = max_norm / (norm + 1e-6), clamped to 1 (clip_grad_norm_)."""
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
