"""Layer cases: every numpy_gpt layer against the same computation under torch autograd.

For each layer: forward output, the input gradient and every weight gradient, with a random
upstream gradient dout (torch side: `(out * dout).sum().backward()`, STYLE.md P3). Sizes
that all differ, B=2, T=3, C=8, NH=2, V=11, the edge B=1, T=1, and the --config sizes
(STYLE.md P4). The torch side is written with torch ops and torch_gpt's own pieces
(causal_attention, Dropout), never with numpy_gpt code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from numpy_gpt.nn import layers as L
from torch_gpt.layers import Dropout, causal_attention

from ..harness import Context
from . import Case, register

Sizes = tuple[int, int, int, int, int]  # B, T, C, NH, V
FIXED_SIZES: list[Sizes] = [(2, 3, 8, 2, 11), (1, 1, 8, 2, 11)]
DROPOUT_P = 0.25

# The torch reference for each GELU kind (a table, so a test can plant the wrong one).
TORCH_GELU: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": functools.partial(F.gelu, approximate="tanh"),
    "exact": functools.partial(F.gelu, approximate="none"),
}


def sizes(ctx: Context) -> list[Sizes]:
    cfg = ctx.config
    own = (ctx.batch_size, ctx.seq_len, cfg.n_embd, cfg.n_head, cfg.vocab_size)
    return FIXED_SIZES + ([own] if own not in FIXED_SIZES else [])


def _tag(s: Sizes) -> str:
    return f"B{s[0]}T{s[1]}C{s[2]}"


def _compare(
    ctx: Context,
    tag: str,
    out: np.ndarray | float,
    grads: dict[str, np.ndarray | None],
    torch_fn: Callable[..., torch.Tensor],
    inputs: dict[str, np.ndarray | None],
    dout: np.ndarray | float,
) -> None:
    """Run torch_fn on copies of inputs, backprop dout, check out and every named grad."""
    tensors = {k: None if v is None else ctx.tensor(v, requires_grad=k in grads)
               for k, v in inputs.items()}
    out_t = torch_fn(**tensors)
    (out_t * ctx.tensor(np.asarray(dout))).sum().backward()
    ctx.check(f"{tag} out", out_t, out, "forward")
    for k, g in grads.items():
        if g is not None:
            ctx.check(f"{tag} d{k}", tensors[k].grad, g, "grad")


def _randn(rng: np.random.Generator, ctx: Context, *shape: int, scale: float = 1.0
           ) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(ctx.ref_dtype)


def run_embedding(ctx: Context) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, _, V = s
        idx = rng.integers(0, V, (B, T))
        wte, wpe = _randn(rng, ctx, V, C), _randn(rng, ctx, T + 1, C)  # one unused position
        out, cache = L.embedding_forward(idx, wte, wpe)
        dout = _randn(rng, ctx, *out.shape)
        dwte, dwpe = L.embedding_backward(dout, cache)

        def fn(idx: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(idx.size(1), device=idx.device)
            return F.embedding(idx, wte) + F.embedding(pos, wpe)

        _compare(ctx, _tag(s), out, {"wte": dwte, "wpe": dwpe}, fn,
                 {"idx": idx, "wte": wte, "wpe": wpe}, dout)


def run_layernorm(ctx: Context, bias: bool) -> None:
    rng, eps = ctx.rng(), ctx.config.layer_norm_eps
    for s in sizes(ctx):
        B, T, C, _, _ = s
        x = _randn(rng, ctx, B, T, C, scale=2.0)
        w = 1.0 + _randn(rng, ctx, C, scale=0.1)
        b = _randn(rng, ctx, C, scale=0.1) if bias else None
        out, cache = L.layernorm_forward(x, w, b, eps)
        dout = _randn(rng, ctx, *out.shape)
        dx, dw, db = L.layernorm_backward(dout, cache)

        def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return F.layer_norm(x, (x.size(-1),), w, b, eps)

        _compare(ctx, _tag(s), out, {"x": dx, "w": dw, "b": db}, fn, {"x": x, "w": w, "b": b},
                 dout)


def run_linear(ctx: Context, bias: bool) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, _, _ = s
        x = _randn(rng, ctx, B, T, C)
        w = _randn(rng, ctx, 3 * C, C, scale=0.3)  # (out, in), out != in
        b = _randn(rng, ctx, 3 * C, scale=0.1) if bias else None
        out, cache = L.linear_forward(x, w, b)
        dout = _randn(rng, ctx, *out.shape)
        dx, dw, db = L.linear_backward(dout, cache)
        _compare(ctx, _tag(s), out, {"x": dx, "w": dw, "b": db},
                 lambda x, w, b: F.linear(x, w, b), {"x": x, "w": w, "b": b}, dout)


def run_gelu(ctx: Context, kind: str) -> None:
    forward, backward = ((L.gelu_tanh_forward, L.gelu_tanh_backward) if kind == "tanh"
                         else (L.gelu_exact_forward, L.gelu_exact_backward))
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, _, _ = s
        x = _randn(rng, ctx, B, T, 4 * C, scale=3.0)  # covers both tails and the bend
        out, cache = forward(x)
        dout = _randn(rng, ctx, *out.shape)
        dx = backward(dout, cache)
        _compare(ctx, _tag(s), out, {"x": dx}, lambda x: TORCH_GELU[kind](x), {"x": x}, dout)


def _torch_attention(qkv: torch.Tensor, mask: torch.Tensor | None, *, n_head: int, attn: str,
                     drop: Dropout, n_kv_head: int | None = None) -> torch.Tensor:
    """The attention core as CausalSelfAttention runs it, between c_attn and c_proj."""
    B, T, D = qkv.shape
    KV = n_head if n_kv_head is None else n_kv_head
    hs = D // (n_head + 2 * KV)
    C = n_head * hs
    # (B,T,(NH+2KV)hs) -> q (B,NH,T,hs), k, v (B,KV,T,hs)
    q, k, v = qkv.split((C, KV * hs, KV * hs), -1)
    q = q.reshape(B, T, n_head, hs).transpose(1, 2)
    k, v = (t.reshape(B, T, KV, hs).transpose(1, 2) for t in (k, v))
    y = causal_attention(q, k, v, attn=attn, dropout=drop, dropout_mask=mask)
    return y.transpose(1, 2).reshape(B, T, C)  # re-merge heads


def run_attention(ctx: Context, attn: str, dropout: bool) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, NH, _ = s
        qkv = _randn(rng, ctx, B, T, 3 * C)
        mask = rng.random((B, NH, T, T)) >= DROPOUT_P if dropout else None
        p = DROPOUT_P if dropout else 0.0
        out, cache = L.attention_forward(qkv, NH, mask, p)
        dout = _randn(rng, ctx, *out.shape)
        dqkv = L.attention_backward(dout, cache)
        fn = functools.partial(_torch_attention, n_head=NH, attn=attn, drop=Dropout(p).train())
        _compare(ctx, _tag(s), out, {"qkv": dqkv}, fn, {"qkv": qkv, "mask": mask}, dout)


TILED_SIZES: list[tuple[Sizes, int]] = [((2, 7, 8, 2, 11), 3), ((1, 1, 8, 2, 11), 4),
                                        ((2, 3, 8, 2, 11), 16)]  # (sizes, tile)


def run_tiled_attention(ctx: Context) -> None:
    """numpy_gpt's tiled kernel (flash_attention.py) against torch's SDPA, which is what
    torch_gpt runs for every GPTConfig.attention: odd T over several tiles, T=1, tile > T,
    and the --config size with its own attention_tile."""
    rng = ctx.rng()
    cfg = ctx.config
    own = (ctx.batch_size, ctx.seq_len, cfg.n_embd, cfg.n_head, cfg.vocab_size)
    for s, tile in TILED_SIZES + [(own, cfg.attention_tile_for(ctx.seq_len))]:
        B, T, C, NH, _ = s
        qkv = _randn(rng, ctx, B, T, 3 * C)
        out, cache = L.flash_attention_forward(qkv, NH, tile)
        dout = _randn(rng, ctx, *out.shape)
        dqkv = L.flash_attention_backward(dout, cache)
        fn = functools.partial(_torch_attention, n_head=NH, attn="sdpa", drop=Dropout(0.0))
        _compare(ctx, f"{_tag(s)} tile{tile}", out, {"qkv": dqkv}, fn,
                 {"qkv": qkv, "mask": None}, dout)


def run_dropout(ctx: Context) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, C, _, _ = s
        x = _randn(rng, ctx, B, T, C)
        mask = rng.random((B, T, C)) >= DROPOUT_P
        out, cache = L.dropout_forward(x, mask, DROPOUT_P)
        dout = _randn(rng, ctx, *out.shape)
        dx = L.dropout_backward(dout, cache)
        _compare(ctx, _tag(s), out, {"x": dx}, Dropout(DROPOUT_P).train(),
                 {"x": x, "mask": mask}, dout)


def _torch_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *,
                         label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100,
                           label_smoothing=label_smoothing)


def run_cross_entropy(ctx: Context, label_smoothing: float, ignore: bool) -> None:
    rng = ctx.rng()
    for s in sizes(ctx):
        B, T, _, _, V = s
        logits = _randn(rng, ctx, B, T, V, scale=2.0)
        targets = rng.integers(0, V, (B, T))
        if ignore and B * T > 1:
            targets.flat[rng.choice(B * T, size=(B * T) // 2, replace=False)] = -100
        loss, cache = L.cross_entropy_forward(logits, targets, label_smoothing)
        dloss = float(rng.standard_normal())
        dlogits = L.cross_entropy_backward(cache, dloss)

        fn = functools.partial(_torch_cross_entropy, label_smoothing=label_smoothing)
        _compare(ctx, _tag(s), loss, {"logits": dlogits}, fn,
                 {"logits": logits, "targets": targets}, dloss)


register(Case("layer/embedding", run_embedding))
for _bias in (True, False):
    register(Case(f"layer/layernorm{'' if _bias else '-nobias'}",
                  functools.partial(run_layernorm, bias=_bias)))
    register(Case(f"layer/linear{'' if _bias else '-nobias'}",
                  functools.partial(run_linear, bias=_bias)))
for _kind in ("tanh", "exact"):
    register(Case(f"layer/gelu_{_kind}", functools.partial(run_gelu, kind=_kind)))
register(Case("layer/attention-sdpa", functools.partial(run_attention, attn="sdpa",
                                                        dropout=False)))
register(Case("layer/attention-manual", functools.partial(run_attention, attn="manual",
                                                          dropout=False)))
register(Case("layer/attention-manual-dropout",
              functools.partial(run_attention, attn="manual", dropout=True)))
register(Case("layer/attention-tiled-sdpa", run_tiled_attention, cupy=True))
register(Case("layer/dropout", run_dropout))
register(Case("layer/cross_entropy", functools.partial(run_cross_entropy, label_smoothing=0.0,
                                                       ignore=False)))
register(Case("layer/cross_entropy-smooth-ignore",
              functools.partial(run_cross_entropy, label_smoothing=0.1, ignore=True)))
