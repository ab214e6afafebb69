"""Text generation with torch_gpt: a KV cache for incremental decoding, and sampling.

    model.eval()
    for token in generate(model, prompt_ids, max_new_tokens=100, temperature=0.8, seed=1):
        ...                                               # a stream of token ids
    for text in generate_text(model, tokenizer, "ROMEO:", max_new_tokens=100, top_k=200):
        print(text, end="", flush=True)

The twin of numpy_gpt/generation/generate.py (read its docstring for the KV cache and why the
cache is rebuilt when the context is cropped at block_size). The cached step is written here
from the model's own submodules (ln_1, attn.qkv, attn.c_proj, ln_2, mlp, ln_f and the head
weight); attention over the cache is written out (cached_attention says why it does not call
F.scaled_dot_product_attention). The cache stores the n_kv_head key/value heads, not one per
query head (grouped-query attention's memory saving), and with RoPE it stores the keys already
turned: each new token's q and k are turned by its own position (the cache's length). The
cache tensors live on the model's device and take the dtype the projections produce (bf16 or
fp16 under autocast). Every computation runs under torch.inference_mode, entered per step
rather than around the whole generator: a generator suspended inside a `with` block would
leave the mode switched on in its caller's code between tokens.

Sampling follows the contract in numpy_gpt/generation/sampling.py, written here with torch ops (only
the settings, prompt and text handling are shared; L2 in STYLE.md). The one random number
per token is drawn from a NumPy Generator, as numpy_gpt does, not from a torch.Generator:
torch's CPU and CUDA generators are different streams from each other and from NumPy's
PCG64, so a torch draw would make a seeded sample depend on the framework and the device.
One float64 uniform per token from the same Generator makes the twins' samples identical
whenever their probabilities agree away from the draw's boundaries.

Several prompts decoded together: batch_generate.py. Deliberately omits: beam search, CUDA
graphs, torch.compile of the step.
Ref: nanoGPT model.py generate(); HF transformers generation/logits_process.py and its
DynamicCache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from numpy_gpt.generation.sampling import (
    SamplingConfig,
    SamplingError,
    check_generation_inputs,
    crop_context,
    resolve_config,
)
from numpy_gpt.generation.sampling import generate_text as _generate_text

from .layers import Rope
from .model import GPT
from .precision import autocast

# ---------------------------------------------------------------------- KV cache


class KVCache:
    """Keys and values of every layer for the positions processed so far.

    k[i], v[i]: (B, KV, block_size, hs), KV = n_kv_head, allocated on the first append (device
    and dtype of the keys); rows [0, length) are filled.
    """

    def __init__(self, n_layer: int, block_size: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.block_size = block_size
        self.length = 0

    def reset(self) -> None:
        self.length = 0

    def row(self, b: int) -> KVCache:
        """A one-row cache of views of row b's tensors (writes go through), empty (length 0):
        batch_generate.py rebuilds one row with it after a crop. Needs allocated tensors."""
        view = KVCache(len(self.k), self.block_size)
        view.k, view.v = [k[b:b + 1] for k in self.k], [v[b:b + 1] for v in self.v]
        return view

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B,KV,T,hs) at rows length..length+T; return all filled rows."""
        B, KV, T, hs = k.shape
        if self.k[layer] is None or self.k[layer].shape[0] != B or self.k[layer].dtype != k.dtype:
            shape = (B, KV, self.block_size, hs)
            self.k[layer] = k.new_empty(shape)
            self.v[layer] = v.new_empty(shape)
        L = self.length + T
        self.k[layer][:, :, self.length:L] = k
        self.v[layer][:, :, self.length:L] = v
        return self.k[layer][:, :, :L], self.v[layer][:, :, :L]


def cached_attention(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, offset: int
                     ) -> torch.Tensor:
    """softmax(q K^T / sqrt(hs), masked where j > offset + i) V: T new queries at positions
    offset.. over all L = offset + T cached keys. Shapes: q (B,NH,T,hs), K, V (B,KV,L,hs) ->
    (B,NH,T,hs). Written out instead of F.scaled_dot_product_attention: for one query row on
    this project's 2 shared CPU cores, torch 2.13's CPU SDPA kernel took ~5.6 ms per call with
    2 threads (its thread-pool hand-off) against ~35 us for these three ops."""
    T, L = q.size(-2), K.size(-2)
    future = None
    if T > 1:  # a single new token sees every cached position: nothing to mask
        future = (torch.arange(L, device=q.device)[None, :]
                  > offset + torch.arange(T, device=q.device)[:, None])  # (T, L)
    return grouped_attention(q, K, V, future)


def grouped_attention(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                      masked: torch.Tensor | None) -> torch.Tensor:
    """softmax(q K^T / sqrt(hs), -inf where `masked`) V with K/V heads shared by groups of
    query heads, never repeated: q is viewed (B,KV,G,T,hs), G = NH/KV, so query head
    h = kv*G + g reads key/value head kv (HF's repeat_kv order). Shapes: q (B,NH,T,hs), K, V
    (B,KV,L,hs), masked broadcastable to (B,1,1,T,L) or None -> (B,NH,T,hs)."""
    B, NH, T, hs = q.shape
    KV = K.size(1)
    qg = q.view(B, KV, NH // KV, T, hs)
    att = (qg @ K.unsqueeze(2).transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B,KV,G,T,L)
    if masked is not None:
        att = att.masked_fill(masked, float("-inf"))
    return (torch.softmax(att, dim=-1) @ V.unsqueeze(2)).view(B, NH, T, hs)


@torch.inference_mode()
def forward_cached(
    model: GPT, idx: torch.Tensor, cache: KVCache, *, last_only: bool = False
) -> torch.Tensor:
    """Logits of the new tokens idx (B,T), which follow the cache's positions; the cache grows
    by T. Shapes: idx (B,T) -> logits (B,T,V), or (B,1,V) with last_only. Eval-mode math (no
    dropout); the blocks of GPT.forward, with attention over the cached keys and values:
    S[i, j] = q_i . K_j / sqrt(hs), masked for j > offset + i
    (see numpy_gpt/generation/generate.py)."""
    cfg = model.config
    B, T = idx.shape
    L = cache.length
    if L + T > cfg.block_size:
        raise ValueError(f"forward_cached: {T} new tokens do not fit a cache holding {L} of "
                         f"{cfg.block_size} positions")
    x = embed(model, idx, torch.arange(L, L + T, dtype=torch.long, device=idx.device))

    def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        K, V = cache.append(i, k, v)  # (B,KV,L+T,hs)
        return cached_attention(q, K, V, L)

    x = forward_blocks(model, x, attend, model.rope(L, T))
    if last_only:
        x = x[:, -1:]
    cache.length = L + T
    return head_logits(model, x)  # (B,T,C) -> (B,T,V)


def embed(model: GPT, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Token embeddings, plus the position table's rows `pos` when the model has one (RoPE
    models turn q and k instead). Shapes: idx (B,T), pos (T,) or (B,T) -> (B,T,C)."""
    x = model.transformer.wte(idx)
    return x + model.transformer.wpe(pos) if "wpe" in model.transformer else x


def forward_blocks(model: GPT, x: torch.Tensor, attend: Callable[..., torch.Tensor],
                   rope: Rope = None) -> torch.Tensor:
    """The blocks of GPT.forward in eval mode, with `attend(layer, q, k, v) -> (B,NH,T,hs)`
    (q (B,NH,T,hs), k, v (B,KV,T,hs) of the new positions, RoPE already applied with the
    (cos, sin) rows `rope`) in place of the attention over the sequence."""
    B, T, C = x.shape
    for i, block in enumerate(model.transformer.h):
        q, k, v = block.attn.qkv(block.ln_1(x), rope)
        y = attend(i, q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-merge heads
        x = x + block.attn.c_proj(y)  # residual 1
        x = x + block.mlp.c_proj(block.mlp.hidden(block.ln_2(x)))  # residual 2 (no dropout)
    return x


def head_logits(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """ln_f, then the (tied or untied) head: (B,T,C) -> (B,T,V)."""
    head = model.transformer.wte.weight if model.lm_head is None else model.lm_head.weight
    return F.linear(model.transformer.ln_f(x), head)


class Decoder:
    """Next-token logits of a growing sequence, with or without a KV cache.

    The twin of numpy_gpt.generation.generate.Decoder: `context` is what the model sees (the last
    block_size tokens), `logits` (V,) are for the token after it; append(token) moves one
    step, rebuilding the cache after a crop. Without the cache every step is model(context).
    """

    def __init__(self, model: GPT, prompt_ids: Sequence[int], use_kv_cache: bool = True,
                 autocast_dtype: str | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.block_size = model.config.block_size
        self.context = crop_context(list(prompt_ids), self.block_size)
        self.cache = KVCache(model.config.n_layer, self.block_size) if use_kv_cache else None
        self.logits = self._recompute()

    @torch.inference_mode()
    def append(self, token: int) -> torch.Tensor:
        with autocast(self.device, self.autocast_dtype):
            return self._append(token)

    def _append(self, token: int) -> torch.Tensor:
        self.context.append(int(token))
        if len(self.context) > self.block_size:
            self.context = self.context[1:]  # crop: every position shifts, the cache is stale
            self.logits = self._recompute()
        elif self.cache is None:
            self.logits = self._recompute()
        else:
            idx = torch.tensor([[int(token)]], dtype=torch.long, device=self.device)
            self.logits = forward_cached(self.model, idx, self.cache)[0, -1]
        return self.logits

    @torch.inference_mode()
    def _recompute(self) -> torch.Tensor:
        idx = torch.tensor([self.context], dtype=torch.long, device=self.device)
        with autocast(self.device, self.autocast_dtype):
            if self.cache is None:
                return self.model(idx)[0][0, -1]
            self.cache.reset()  # prefill
            return forward_cached(self.model, idx, self.cache, last_only=True)[0, -1]


# ---------------------------------------------------------------------- sampling


def _float(logits: torch.Tensor) -> torch.Tensor:
    """Step 1: float64, or float32 on MPS (no float64 there)."""
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    return logits.detach().to(dtype)


@torch.inference_mode()
def penalized_logits(logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig
                     ) -> torch.Tensor:
    """Steps 1-3 of the contract (numpy_gpt/generation/sampling.py): logits (V,) after the
    repetition penalty on `seen` (V,) bool and the vocab_limit mask."""
    out = _float(logits).clone()  # the caller's logits stay untouched
    r = config.repetition_penalty
    if r != 1.0:
        out = torch.where(seen, torch.where(out > 0, out / r, out * r), out)
    if config.vocab_limit is not None:
        out[config.vocab_limit:] = float("-inf")
    return out


@torch.inference_mode()
def sampling_probs(logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig
                   ) -> torch.Tensor:
    """Steps 1-8: the (V,) probabilities the draw uses; filtered tokens are exactly 0, and
    after top-p the rest is not renormalised."""
    lg = penalized_logits(logits, seen, config) / config.temperature
    V = lg.size(-1)
    if config.top_k is not None and config.top_k < V:
        kth = torch.topk(lg, config.top_k).values[-1]  # k-th largest value
        lg = lg.masked_fill(lg < kth, float("-inf"))
    probs = torch.softmax(lg, dim=-1)
    if config.top_p is not None and config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True, stable=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # 0 for the top token
        remove = torch.empty_like(probs, dtype=torch.bool)
        remove[order] = mass_before >= config.top_p
        probs = probs.masked_fill(remove, 0.0)
    return probs


@torch.inference_mode()
def draw_token(probs: torch.Tensor, u: float) -> int:
    """Step 9: the first index i with cumsum(probs)[i] > u * sum(probs), u in [0, 1).
    (If rounding puts u * total at the total, the last nonzero-probability token.)"""
    c = torch.cumsum(probs, dim=-1)
    i = int(torch.searchsorted(c, c[-1:] * u, right=True).item())
    return i if i < c.numel() else int(torch.nonzero(probs).max().item())


def next_token(logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig,
               u: float | None) -> int:
    """The next token from (V,) logits: argmax when greedy (u unused), else the draw."""
    if config.is_greedy:
        return int(torch.argmax(penalized_logits(logits, seen, config)).item())  # first max
    return draw_token(sampling_probs(logits, seen, config), u)


def generate(
    model: GPT,
    prompt_ids: Sequence[int] | np.ndarray | torch.Tensor,
    config: SamplingConfig | None = None,
    *,
    rng: np.random.Generator | None = None,
    autocast_dtype: str | None = None,
    **settings: Any,
) -> Iterator[int]:
    """Stream up to max_new_tokens generated token ids after `prompt_ids`.

    The same settings and behaviour as numpy_gpt.generation.generate.generate (checked here, before
    anything runs; the prompt cropped from the left; a stop id ends generation unyielded;
    one uniform per sampled token from `rng`, default np.random.default_rng(seed)). Runs on
    the model's device; autocast_dtype "bfloat16" | "float16" runs each forward step under
    torch.autocast (entered per step, like inference_mode). Call model.eval() first when the
    model has dropout.
    """
    config = resolve_config(config, settings)
    if isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    prompt = check_generation_inputs(prompt_ids, config, model.config.vocab_size)
    if model.training and model.config.dropout > 0:
        raise SamplingError("the model is in training mode with dropout; call model.eval() "
                            "before generating")
    autocast(next(model.parameters()).device, autocast_dtype)  # checks the name, up front
    rng = np.random.default_rng(config.seed) if rng is None else rng
    return _generate(model, prompt, config, rng, autocast_dtype)


def _generate(model: GPT, prompt: list[int], config: SamplingConfig,
              rng: np.random.Generator, autocast_dtype: str | None) -> Iterator[int]:
    if config.max_new_tokens == 0:
        return
    decoder = Decoder(model, prompt, config.use_kv_cache, autocast_dtype)
    seen = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=decoder.device)
    seen[torch.tensor(prompt, device=decoder.device)] = True
    stop = set(config.stop_ids)
    for n in range(config.max_new_tokens):
        u = None if config.is_greedy else rng.random()
        token = next_token(decoder.logits, seen, config, u)
        if token in stop:
            return
        yield token
        seen[token] = True
        if n + 1 < config.max_new_tokens:  # the last token needs no forward after it
            decoder.append(token)


def generate_text(
    model: GPT,
    tokenizer: Any,
    prompt: str,
    config: SamplingConfig | None = None,
    *,
    rng: np.random.Generator | None = None,
    autocast_dtype: str | None = None,
    **settings: Any,
) -> Iterator[str]:
    """Stream the text generated after `prompt`; ends at a stop string, which is trimmed."""
    return _generate_text(generate, model, tokenizer, prompt, resolve_config(config, settings),
                          rng, autocast_dtype=autocast_dtype)
