"""Text generation with numpy_gpt: a KV cache for incremental decoding, and sampling.

    for token in generate(model, prompt_ids, max_new_tokens=100, temperature=0.8, seed=1):
        ...                                               # a stream of token ids
    for text in generate_text(model, tokenizer, "ROMEO:", max_new_tokens=100, top_k=200):
        print(text, end="", flush=True)                   # a stream of text, stop strings cut

KV cache. A full forward over T tokens costs O(T) matmuls per new token, O(T^2) for a whole
generation. But in a causal model the key and value vectors at position j depend only on
tokens 0..j, so once computed they never change: the cache keeps them (per layer, for every
position so far) and each new token runs the network on its one position, attending to the
cached keys/values. The prompt is processed in one batched call first (prefill). Inference
only: nothing here has a backward, and the forward functions of numpy_gpt.nn.layers are reused
wherever they fit (embedding, LayerNorm, Linear, GELU); only the attention over the cache is
new (cached_attention_forward, its math in its docstring).

Context cropping. The model sees at most block_size tokens. Past that, as nanoGPT does, the
context is the last block_size tokens of the sequence. Cropping from the left shifts every
position by one, and positions enter through the learned embedding wpe at the very bottom
of the network, so every cached key and value is stale: the cache is rebuilt by a prefill
of the cropped context. Past block_size each new token therefore costs one full forward,
exactly what the uncached path costs, and the output equals the uncached output (a cheaper
sliding window is only exact with relative positions such as RoPE, which GPT-2 lacks).

Llama-shaped models. RoPE turns each new position's q and k by its own absolute position
(offset L of the cache + t), before the key is cached: a cached key is stored turned, as a
full forward computes it, and there is no wpe to add. The cache holds n_kv_head heads per
layer, not n_head: with grouped-query attention its memory shrinks by n_head / n_kv_head.
A crop rebuilds the cache as for GPT-2 (positions shift; exact, not a sliding window).

Sampling follows the contract in numpy_gpt/generation/sampling.py, written here with NumPy ops;
torch_gpt/generate.py writes the same steps with torch ops.

Several prompts decoded together: batch_generate.py (per-row positions over this cache).
Deliberately omits: beam search, speculative decoding.
Ref: nanoGPT model.py generate(); Pope et al. 2022, "Efficiently Scaling Transformer
Inference" (KV cache); HF transformers generation/logits_process.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..nn.config import GPTConfig
from ..nn.device import get_array_module, to_numpy
from ..nn.layers import (
    embedding_forward,
    gelu_exact_forward,
    gelu_tanh_forward,
    linear_forward,
    rope_forward,
    swiglu_forward,
)
from ..nn.layers.attention import by_group, split_heads
from ..nn.layers.rope import qk_heads
from ..nn.model_parts import norm_forward
from .sampling import (
    SamplingConfig,
    check_generation_inputs,
    crop_context,
    resolve_config,
)
from .sampling import generate_text as _generate_text

# ---------------------------------------------------------------------- KV cache


class KVCache:
    """Keys and values of every layer for the positions processed so far.

    k[i], v[i]: (B, KV, block_size, hs), preallocated on xp's device (KV = n_kv_head: the
    key/value heads, n_head unless grouped); rows [0, length) are filled.
    """

    def __init__(self, config: GPTConfig, batch_size: int = 1, dtype: Any = np.float64,
                 xp: Any = np):
        shape = (batch_size, config.kv_heads, config.block_size, config.head_size)
        self.k = [xp.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [xp.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.batch_size, self.block_size = batch_size, config.block_size
        self.length = 0  # positions filled

    def reset(self) -> None:
        """Forget every position (the arrays are reused, not cleared)."""
        self.length = 0

    def row(self, b: int) -> KVCache:
        """A one-row cache whose arrays are views of row b of this one (writes go through),
        empty (length 0): batch_generate.py rebuilds one row with it after a crop."""
        view = KVCache.__new__(KVCache)
        view.k, view.v = [k[b:b + 1] for k in self.k], [v[b:b + 1] for v in self.v]
        view.batch_size, view.block_size, view.length = 1, self.block_size, 0
        return view


def cached_attention_forward(
    qkv: np.ndarray, n_head: int, k_cache: np.ndarray, v_cache: np.ndarray, offset: int
) -> np.ndarray:
    """Causal attention of T new positions over the cached positions and themselves.

    Shapes: qkv (B,T,(NH+2KV)hs) at positions offset..offset+T-1; k_cache, v_cache
            (B,KV,S,hs) with rows [0, offset) filled earlier -> out (B,T,C). Writes rows
            [offset, offset+T). KV (the cache's heads) < NH: grouped-query attention, each
            cached head read by its group of NH/KV query heads (attention.py's by_group).
    Math:   K = [K_cache; k_new], V = [V_cache; v_new]          (B,KV,L,hs), L = offset+T
            S[i, j] = q_i . K_j / sqrt(hs)                       (B,NH,T,L)
            S[i, j] = -inf for j > offset + i                    query i sits at offset+i
            y_i = sum_j softmax_j(S)[i, j] V_j                   (B,NH,T,hs) -> (B,T,C)
    Exact:  K_j, V_j depend only on tokens 0..j, so the cached rows equal those a full
            forward recomputes; y equals rows offset.. of attention_forward up to rounding.
    """
    xp = get_array_module(qkv)
    B, T, _ = qkv.shape
    KV = k_cache.shape[1]
    L = offset + T
    q, k, v = split_heads(qkv, n_head, KV)  # (B,NH,T,hs), 2 x (B,KV,T,hs)
    hs = q.shape[-1]
    k_cache[:, :, offset:L] = k
    v_cache[:, :, offset:L] = v
    # the filled rows, as (B,KV,1,L,hs) views: each K/V head broadcast over its group
    K, V = k_cache[:, :, None, :L], v_cache[:, :, None, :L]

    att = by_group(q, KV) @ K.swapaxes(-1, -2)  # (B,KV,G,T,hs) @ (B,KV,1,hs,L) -> (..,T,L)
    att = att.reshape(B, n_head, T, L)  # a view of the fresh product
    att *= 1.0 / math.sqrt(hs)
    if T > 1:  # a single new token sees every cached position: nothing to mask
        future = xp.arange(L)[None, :] > offset + xp.arange(T)[:, None]  # (T, L)
        att[..., future] = -np.inf
    att -= att.max(axis=-1, keepdims=True)  # softmax along keys, as attention_forward
    xp.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)
    y = by_group(att, KV) @ V  # (B,KV,G,T,L) @ (B,KV,1,L,hs) -> (B,KV,G,T,hs)
    return y.reshape(B, n_head, T, hs).transpose(0, 2, 1, 3).reshape(B, T, n_head * hs)


def inference_params(model: Any) -> dict[str, np.ndarray]:
    """model.params, with LoRA adapters folded in when the model has some attached (merged
    once per generation, W' = W + scale B A, rather than applied at every step)."""
    if getattr(model, "lora", None) is None:
        return model.params
    from ..nn.lora import merged_params  # only models with adapters need it

    return merged_params(model.params, model.lora_params, model.lora)


def forward_cached(
    model: Any,
    idx: np.ndarray,
    cache: KVCache,
    *,
    last_only: bool = False,
    params: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Logits of the new tokens idx (B,T), which follow the cache's positions; the cache grows
    by T. Shapes: idx (B,T) -> logits (B,T,V), or (B,1,V) with last_only (generation needs
    only the last position; for GPT-2 that skips a (T,C) x (C,50257) matmul in prefill).
    Eval mode: no dropout. The same blocks as GPT.forward, with attention over the cache.
    `params` default: inference_params(model) (pass them in to merge adapters only once)."""
    cfg = model.config
    P = inference_params(model) if params is None else params
    idx = model.xp.asarray(idx)  # to the model's device
    B, T = idx.shape
    L = cache.length
    if B != cache.batch_size or L + T > cfg.block_size:
        raise ValueError(
            f"forward_cached: {B}x{T} new tokens do not fit a cache of batch "
            f"{cache.batch_size} holding {L} of {cfg.block_size} positions"
        )
    # positions L..L+T-1: embedding_forward adds wpe[:T] of the table it is given; RoPE
    # turns q and k by rows L..L+T-1 of its tables instead
    wpe = P.get("transformer.wpe.weight")
    x, _ = embedding_forward(idx, P["transformer.wte.weight"],
                             None if wpe is None else wpe[L:L + T])
    rope = model.rope_rows(L, T) if cfg.position == "rope" else None
    x = forward_blocks(model, x, P, lambda i, qkv: cached_attention_forward(
        qkv, cfg.n_head, cache.k[i], cache.v[i], L), rope)
    if last_only:
        x = x[:, -1:]
    logits = head_logits(model, x, P)  # (B,T,C) -> (B,T,V)
    cache.length = L + T
    return logits


def forward_blocks(model: Any, x: np.ndarray, P: dict[str, np.ndarray],
                   attend: Callable[[int, np.ndarray], np.ndarray],
                   rope: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The n_layer blocks of GPT.forward in eval mode, with `attend(layer, qkv) -> (B,T,C)`
    in place of the attention core (attention over a KV cache). x (B,T,C) -> (B,T,C).
    `rope`: RoPE's (cos, sin) rows of the new positions, broadcastable against (B,T,H,hs/2)
    (GPT.rope_rows), when config.position is "rope"; they turn q and k before `attend`."""
    cfg = model.config
    gelu_forward = gelu_tanh_forward if cfg.gelu == "tanh" else gelu_exact_forward

    def linear(m: np.ndarray, key: str) -> np.ndarray:
        return linear_forward(m, P[key + ".weight"], P.get(key + ".bias"))[0]

    for i in range(cfg.n_layer):
        h = f"transformer.h.{i}."
        a = linear(norm_forward(cfg, P, x, h + "ln_1")[0], h + "attn.c_attn")
        if rope is not None:  # turn q and k in place (a is fresh), v untouched
            qk = qk_heads(a, cfg.n_head, cfg.kv_heads)
            qk[...] = rope_forward(qk, *rope, cfg.rope_layout)[0]
        a = attend(i, a)
        x = x + linear(a, h + "attn.c_proj")  # residual 1
        m = norm_forward(cfg, P, x, h + "ln_2")[0]
        if cfg.mlp == "swiglu":
            m = swiglu_forward(linear(m, h + "mlp.c_gate"), linear(m, h + "mlp.c_fc"))[0]
        else:
            m = gelu_forward(linear(m, h + "mlp.c_fc"))[0]
        x = x + linear(m, h + "mlp.c_proj")  # residual 2
    return x


def head_logits(model: Any, x: np.ndarray, P: dict[str, np.ndarray]) -> np.ndarray:
    """ln_f, then the (tied or untied) head: x (B,T,C) -> logits (B,T,V)."""
    cfg = model.config
    x, _ = norm_forward(cfg, P, x, "transformer.ln_f")
    head = P["transformer.wte.weight" if cfg.tie_weights else "lm_head.weight"]
    return linear_forward(x, head, None)[0]


class Decoder:
    """Next-token logits of a growing sequence, with or without a KV cache.

    `context` holds what the model sees (the last block_size tokens); `logits` (V,) are for
    the token after it, a NumPy array on the host (sampling runs there, whatever the model's
    device). append(token) moves one step: one cached position while the context fits, else a
    crop from the left and a rebuild (see the module docstring). Without the cache every step
    is model.forward on the whole context, the reference the cache must equal.
    """

    def __init__(self, model: Any, prompt_ids: Sequence[int], use_kv_cache: bool = True):
        self.model = model
        self.block_size = model.config.block_size
        self.context = crop_context(prompt_ids, self.block_size)
        self.cache = KVCache(model.config, 1, model.dtype, model.xp) if use_kv_cache else None
        self.params = inference_params(model) if use_kv_cache else None
        self.logits = self._recompute()

    def append(self, token: int) -> np.ndarray:
        self.context.append(int(token))
        if len(self.context) > self.block_size:
            self.context = self.context[1:]  # crop: every position shifts, the cache is stale
            self.logits = self._recompute()
        elif self.cache is None:
            self.logits = self._recompute()
        else:
            idx = np.array([[int(token)]])
            self.logits = to_numpy(
                forward_cached(self.model, idx, self.cache, params=self.params)[0, -1])
        return self.logits

    def _recompute(self) -> np.ndarray:
        idx = np.array([self.context])
        if self.cache is None:
            return to_numpy(self.model.forward(idx)[0][0, -1])
        self.cache.reset()  # prefill
        return to_numpy(forward_cached(self.model, idx, self.cache, last_only=True,
                                       params=self.params)[0, -1])


# ---------------------------------------------------------------------- sampling


def penalized_logits(logits: np.ndarray, seen: np.ndarray, config: SamplingConfig
                     ) -> np.ndarray:
    """Steps 1-3 of the contract (sampling.py): float64 logits (V,) after the repetition
    penalty on `seen` (V,) bool and the vocab_limit mask."""
    out = np.array(logits, dtype=np.float64)  # a copy: the caller's logits stay untouched
    r = config.repetition_penalty
    if r != 1.0:
        out = np.where(seen, np.where(out > 0, out / r, out * r), out)
    if config.vocab_limit is not None:
        out[config.vocab_limit:] = -np.inf
    return out


def sampling_probs(logits: np.ndarray, seen: np.ndarray, config: SamplingConfig
                   ) -> np.ndarray:
    """Steps 1-8: the (V,) probabilities the draw uses; filtered tokens are exactly 0 and
    after top-p the rest is not renormalised (the draw scales u by the total instead)."""
    lg = penalized_logits(logits, seen, config) / config.temperature
    V = lg.shape[-1]
    if config.top_k is not None and config.top_k < V:
        kth = np.partition(lg, V - config.top_k)[V - config.top_k]  # k-th largest value
        lg[lg < kth] = -np.inf
    probs = np.exp(lg - lg.max())
    probs /= probs.sum()
    if config.top_p is not None and config.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")  # descending, ties in vocabulary order
        sorted_probs = probs[order]
        mass_before = np.cumsum(sorted_probs) - sorted_probs  # 0 for the top token: kept
        keep = np.empty(V, dtype=bool)
        keep[order] = mass_before < config.top_p
        probs[~keep] = 0.0
    return probs


def draw_token(probs: np.ndarray, u: float) -> int:
    """Step 9: the first index i with cumsum(probs)[i] > u * sum(probs), u in [0, 1).

    Zero-probability tokens are never chosen: the cumsum is flat across them. If rounding
    puts u * total at the total itself, the last token with nonzero probability is chosen.
    """
    c = np.cumsum(probs)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    return i if i < len(c) else int(np.flatnonzero(probs)[-1])


def next_token(logits: np.ndarray, seen: np.ndarray, config: SamplingConfig,
               u: float | None) -> int:
    """The next token from (V,) logits: argmax when greedy (u unused), else the draw."""
    if config.is_greedy:
        return int(np.argmax(penalized_logits(logits, seen, config)))  # first maximum
    return draw_token(sampling_probs(logits, seen, config), u)


def generate(
    model: Any,
    prompt_ids: Sequence[int] | np.ndarray,
    config: SamplingConfig | None = None,
    *,
    rng: np.random.Generator | None = None,
    **settings: Any,
) -> Iterator[int]:
    """Stream up to max_new_tokens generated token ids after `prompt_ids`.

    `settings` override fields of `config` (SamplingConfig). Settings and prompt are checked
    here, before anything runs (one SamplingError each). A prompt longer than block_size is
    cropped from the left. A stop id ends generation and is not yielded. `rng` supplies one
    uniform per sampled token (greedy draws none); default np.random.default_rng(seed).
    The repetition penalty counts every token of the prompt and the generation so far.
    """
    config = resolve_config(config, settings)
    prompt = check_generation_inputs(prompt_ids, config, model.config.vocab_size)
    rng = np.random.default_rng(config.seed) if rng is None else rng
    return _generate(model, prompt, config, rng)


def _generate(model: Any, prompt: list[int], config: SamplingConfig,
              rng: np.random.Generator) -> Iterator[int]:
    if config.max_new_tokens == 0:
        return
    decoder = Decoder(model, prompt, config.use_kv_cache)
    seen = np.zeros(model.config.vocab_size, dtype=bool)
    seen[prompt] = True
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
    model: Any,
    tokenizer: Any,
    prompt: str,
    config: SamplingConfig | None = None,
    *,
    rng: np.random.Generator | None = None,
    **settings: Any,
) -> Iterator[str]:
    """Stream the text generated after `prompt`; ends at a stop string, which is trimmed."""
    return _generate_text(generate, model, tokenizer, prompt, resolve_config(config, settings),
                          rng)
