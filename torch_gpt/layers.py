"""The functional pieces torch_gpt's module tree (model.py) is built from.

    Dropout            nn.Dropout that can take an explicit keep-mask (parity's injected masks)
    LayerNorm          nn.LayerNorm with nanoGPT's `bias` switch; make_norm picks it or RMSNorm
    rope_tables        RoPE's cos/sin for every position, in float64, built once per model
    apply_rope, Rope   turn q or k by those angles, "halves" or "interleaved" pairs
    causal_attention   softmax(q k^T / sqrt(hs) + causal mask) v: SDPA, or written out

The twins of numpy_gpt/nn/layers/ (dropout.py, layernorm.py, rmsnorm.py, rope.py,
attention.py), written with torch ops and differentiated by autograd: nothing here reuses
numpy_gpt's math (STYLE.md L2). Each takes tensors (or the config), not a GPT, so parity's
layer cases check them one by one against numpy_gpt's layers. model.py imports all but
LayerNorm, so `from torch_gpt.model import apply_rope` (and the like) keeps working.

Deliberately omits: the modules that hold the projections (CausalSelfAttention, MLP, Block)
and GPT itself (model.py); attention over a KV cache (generate.py).
Ref: nanoGPT model.py (LayerNorm with bias, CausalSelfAttention's two attention paths);
HF transformers modeling_llama.py (rotate_half); llama2.c model.py (apply_rotary_emb);
Su et al. 2021 (RoPE); Ainslie et al. 2023 (GQA).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from numpy_gpt.nn.config import GPTConfig


class Dropout(nn.Module):
    """nn.Dropout that can take an explicit keep-mask: y = x * mask / (1 - p).

    Train mode only: in eval mode, or with p = 0, it is the identity (masks are ignored).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if mask is None:
            return F.dropout(x, self.p, training=True)
        return x * mask * (1.0 / (1.0 - self.p))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm whose bias can be switched off (nanoGPT's LayerNorm(ndim, bias))."""

    def __init__(self, ndim: int, bias: bool, eps: float):
        super().__init__(ndim, eps=eps, bias=bias)


def make_norm(config: GPTConfig) -> nn.Module:
    """ln_1 / ln_2 / ln_f: LayerNorm (GPT-2), or nn.RMSNorm y = w * x / sqrt(mean(x^2) + eps)
    (Llama; a weight only, whatever config.bias says, as numpy_gpt's param_shapes)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.layer_norm_eps)
    return LayerNorm(config.n_embd, config.bias, config.layer_norm_eps)


# ---------------------------------------------------------------------- rotary embeddings


def rope_tables(config: GPTConfig, device: str | torch.device = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every (position, pair) angle, (block_size, hs/2) float64 each:
    angle[p, i] = p * theta^(-2i/hs), pair i turning coordinates (i, i + hs/2) ("halves") or
    (2i, 2i+1) ("interleaved"); the same frequencies in both layouts."""
    hs = config.head_size
    inv_freq = config.rope_theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    angles = torch.arange(config.block_size, dtype=torch.float64)[:, None] * inv_freq
    return angles.cos().to(device), angles.sin().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str
               ) -> torch.Tensor:
    """Turn each pair of x's last axis by its angle. Shapes: x (..., T, hs); cos, sin
    broadcastable to (..., T, hs/2) (the rows of the positions x holds) -> (..., T, hs).
    halves: (x1, x2) = x's two halves -> (x1 cos - x2 sin, x2 cos + x1 sin), HF's
    q * cos + rotate_half(q) * sin; interleaved: the same on (x[2i], x[2i+1]), llama2.c's."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "halves":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    xe, xo = x[..., 0::2], x[..., 1::2]
    return torch.stack((xe * cos - xo * sin, xe * sin + xo * cos), dim=-1).flatten(-2)


Rope = tuple[torch.Tensor, torch.Tensor] | None  # (cos, sin) rows for the positions, or None


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    attn: str = "sdpa",
    dropout: Dropout | None = None,
    dropout_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs) + causal mask) [dropout] v, per head.

    Shapes: q (B,NH,T,hs), k, v (B,KV,T,hs) -> y (B,NH,T,hs); KV divides NH, query head h
    reads key/value head h // (NH/KV) (grouped-query attention; KV = NH is plain multi-head).
    `dropout` is the attention-dropout module (its p and train mode apply); `dropout_mask`
    (B,NH,T,T) bool needs attn="manual".
    """
    p = dropout.p if dropout is not None and dropout.training else 0.0
    group = q.size(1) // k.size(1)
    if attn == "sdpa":
        if dropout_mask is not None and p > 0.0:
            raise ValueError(
                "an injected attention-dropout mask needs attn='manual' "
                "(scaled_dot_product_attention draws its own dropout)"
            )
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True,
                                              enable_gqa=group > 1)
    if group > 1:  # (B,KV,T,hs) -> (B,NH,T,hs): each key/value head once per query head
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B,NH,T,T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    att = att.masked_fill(future, float("-inf"))  # position i sees only j <= i
    att = F.softmax(att, dim=-1)
    if dropout is not None:
        att = dropout(att, dropout_mask)
    return att @ v
