"""Layer cases of the Llama blocks: numpy_gpt's hand-written pairs vs torch autograd.

    layer/rmsnorm             rmsnorm_forward/backward vs F.rms_norm
    layer/rope-halves         rope_forward/backward vs torch_gpt.layers.apply_rope, positions
    layer/rope-interleaved    0..T-1 and a KV-cache offset, Llama's theta and Llama 3's
    layer/swiglu              swiglu_forward/backward vs F.silu(g) * u
    layer/attention-gqa-*     attention_forward/backward with n_kv_head < n_head (and 1:
                              multi-query) vs torch_gpt's causal_attention (SDPA with
                              enable_gqa, or written out, with an attention-dropout mask)
    layer/attention-gqa-tiled-sdpa   flash_attention_forward/backward with grouping vs SDPA

Each compares the output, the input gradients and every weight gradient with a random dout,
as layers.py does (and with its helpers). The torch side is torch ops and torch_gpt's own
pieces (apply_rope, rope_tables, causal_attention), never numpy_gpt code (STYLE.md L2).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

from numpy_gpt.nn import layers as L
from numpy_gpt.nn.config import GPTConfig
from torch_gpt.layers import Dropout, apply_rope, rope_tables

from ..harness import Context
from . import Case, llama_config, register
from .layers import DROPOUT_P, _compare, _randn, _torch_attention, sizes

GQASizes = tuple[int, int, int, int, int]  # B, T, C, NH, KV
FIXED_GQA: list[GQASizes] = [(2, 3, 16, 4, 2), (1, 1, 8, 2, 1), (2, 5, 12, 3, 1)]
ROPE_OFFSET = 5  # a KV cache holding 5 positions: the new rows are turned by 5, 6, ...


def _gqa_sizes(ctx: Context) -> list[GQASizes]:
    cfg = llama_config(ctx.config)
    own = (ctx.batch_size, ctx.seq_len, cfg.n_embd, cfg.n_head, cfg.kv_heads)
    return FIXED_GQA + ([own] if own not in FIXED_GQA else [])


def _tag(s: tuple[int, ...]) -> str:
    return f"B{s[0]}T{s[1]}C{s[2]}"


def run_rmsnorm(ctx: Context) -> None:
    rng, eps = ctx.rng(), ctx.config.layer_norm_eps
    for s in sizes(ctx):
        B, T, C, _, _ = s
        x = _randn(rng, ctx, B, T, C, scale=2.0)
        w = 1.0 + _randn(rng, ctx, C, scale=0.1)
        out, cache = L.rmsnorm_forward(x, w, eps)
        dout = _randn(rng, ctx, *out.shape)
        dx, dw = L.rmsnorm_backward(dout, cache)

        def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return F.rms_norm(x, (x.size(-1),), w, eps)

        _compare(ctx, _tag(s), out, {"x": dx, "w": dw}, fn, {"x": x, "w": w}, dout)


def run_rope(ctx: Context, layout: str) -> None:
    """q/k-shaped x (B,T,H,hs) turned at positions offset..offset+T-1, offset 0 (a whole
    sequence) and ROPE_OFFSET (new tokens after a KV cache), theta 10^4 and 5*10^5."""
    rng = ctx.rng()
    for (B, T, C, NH, _), offset, theta in [(s, o, th) for s in sizes(ctx)
                                             for o, th in ((0, 1e4), (ROPE_OFFSET, 5e5))]:
        hs = C // NH
        if hs % 2:
            continue
        x = _randn(rng, ctx, B, T, NH, hs)
        cos, sin = L.rope_tables(offset + T, hs, theta, np.dtype(ctx.ref_dtype))
        out, cache = L.rope_forward(x, cos[offset:, None], sin[offset:, None], layout)
        dout = _randn(rng, ctx, *out.shape)
        dx = L.rope_backward(dout, cache)
        table = GPTConfig(vocab_size=2, block_size=offset + T, n_layer=1, n_head=NH, n_embd=C,
                          position="rope", rope_theta=theta)
        t_cos, t_sin = (t[offset:].to(ctx.device) for t in rope_tables(table))

        def fn(x: torch.Tensor, cos: torch.Tensor = t_cos, sin: torch.Tensor = t_sin
               ) -> torch.Tensor:  # (B,T,H,hs) -> (B,H,T,hs) and back
            return apply_rope(x.transpose(1, 2), cos, sin, layout).transpose(1, 2)

        _compare(ctx, f"{_tag((B, T, C))} H{NH} pos{offset}+ theta{theta:g}", out, {"x": dx},
                 fn, {"x": x}, dout)


def run_swiglu(ctx: Context) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, _, _ = s
        F_ = 3 * C  # != C, != 4C
        g, u = _randn(rng, ctx, B, T, F_, scale=3.0), _randn(rng, ctx, B, T, F_)
        out, cache = L.swiglu_forward(g, u)
        dout = _randn(rng, ctx, *out.shape)
        dg, du = L.swiglu_backward(dout, cache)
        _compare(ctx, _tag(s), out, {"g": dg, "u": du}, lambda g, u: F.silu(g) * u,
                 {"g": g, "u": u}, dout)


def run_gqa_attention(ctx: Context, attn: str, dropout: bool) -> None:
    rng = ctx.rng()
    for s in _gqa_sizes(ctx):
        B, T, C, NH, KV = s
        qkv = _randn(rng, ctx, B, T, (NH + 2 * KV) * (C // NH))
        mask = rng.random((B, NH, T, T)) >= DROPOUT_P if dropout else None
        p = DROPOUT_P if dropout else 0.0
        out, cache = L.attention_forward(qkv, NH, mask, p, n_kv_head=KV)
        dout = _randn(rng, ctx, *out.shape)
        dqkv = L.attention_backward(dout, cache)
        fn = functools.partial(_torch_attention, n_head=NH, n_kv_head=KV, attn=attn,
                               drop=Dropout(p).train())
        _compare(ctx, f"{_tag(s)} NH{NH}/KV{KV}", out, {"qkv": dqkv}, fn,
                 {"qkv": qkv, "mask": mask}, dout)


def run_gqa_tiled(ctx: Context) -> None:
    """The tiled kernel with grouping (K/V tiles read once per group, never repeated) vs SDPA:
    odd T over several tiles, T=1, and the --config size."""
    rng = ctx.rng()
    for s, tile in [((2, 7, 16, 4, 2), 3), ((1, 1, 8, 2, 1), 4), ((2, 5, 12, 3, 1), 2),
                    (_gqa_sizes(ctx)[-1], 2)]:
        B, T, C, NH, KV = s
        qkv = _randn(rng, ctx, B, T, (NH + 2 * KV) * (C // NH))
        out, cache = L.flash_attention_forward(qkv, NH, tile, n_kv_head=KV)
        dout = _randn(rng, ctx, *out.shape)
        dqkv = L.flash_attention_backward(dout, cache)
        fn = functools.partial(_torch_attention, n_head=NH, n_kv_head=KV, attn="sdpa",
                               drop=Dropout(0.0))
        _compare(ctx, f"{_tag(s)} NH{NH}/KV{KV} tile{tile}", out, {"qkv": dqkv}, fn,
                 {"qkv": qkv, "mask": None}, dout)


register(Case("layer/rmsnorm", run_rmsnorm))
for _layout in ("halves", "interleaved"):
    register(Case(f"layer/rope-{_layout}", functools.partial(run_rope, layout=_layout)))
register(Case("layer/swiglu", run_swiglu))
register(Case("layer/attention-gqa-sdpa", functools.partial(run_gqa_attention, attn="sdpa",
                                                            dropout=False)))
register(Case("layer/attention-gqa-manual", functools.partial(run_gqa_attention,
                                                              attn="manual", dropout=False)))
register(Case("layer/attention-gqa-manual-dropout",
              functools.partial(run_gqa_attention, attn="manual", dropout=True)))
register(Case("layer/attention-gqa-tiled-sdpa", run_gqa_tiled, cupy=True))
