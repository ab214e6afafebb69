"""Batched generation with numpy_gpt: B prompts of different lengths decoded together.

    rows = generate_batch(model, [ids_a, ids_b, ids_c], max_new_tokens=100, greedy=True)
    # rows[b]: the tokens generated after prompt b, exactly what generate() gives for it alone

The exact scheme: right padding, per-row positions, per-row masks. Each row b has its own
length n_b (tokens in its KV cache so far).

  prefill   the prompts, right-padded to the longest, go through one forward over the KV cache.
            Causality makes the padding harmless: a real token at position t < n_b attends
            only to positions <= t, all real, so its keys, values and logits are those of the
            prompt alone. The pad positions' keys and values are junk, and never read (below).
  decode    one new token per row per step, row b's at position n_b: its embedding adds
            wpe[n_b] (or RoPE turns its q and k by position n_b), its key and value are
            written at cache row n_b, and its query attends to
            keys 0..n_b only (scores of the keys beyond are set to -inf, so their softmax
            weight is exactly 0 and the pad junk and other rows' longer histories drop out).
  crop      a row whose context passes block_size is cropped from the left and its cache row
            rebuilt alone, by a one-row prefill (as generate.Decoder does for one sequence).
  stop      a row ends at a stop id (not returned) or after max_new_tokens; finished rows
            ride along with a dummy token whose result is ignored, until every row is done.

Sampling is the one-sequence contract (sampling.py), row by row, each row with its own
np.random.Generator: row b with rngs[b] gives the tokens generate() gives with rng=rngs[b].
`row_rngs(seed, B)` (sampling.py) makes them; row 0's is default_rng(seed), so the first row
is what a single seeded generate() gives. Identical tokens are exact in the math; in floating
point a batched matmul may round differently from a one-row one in the last bit, which can
only flip a token at a near tie (the parity case checks it on a decisive model).

Ref: HF transformers generate() with attention_mask (left padding there; right padding here,
which keeps every row's positions 0..n_b-1 and so needs no position ids); vLLM / Orca
(Yu et al. 2022) for per-sequence KV cache lengths in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..nn.device import get_array_module, to_numpy
from ..nn.layers import embedding_forward
from ..nn.layers.attention import by_group, split_heads
from .generate import (
    KVCache,
    cached_attention_forward,
    forward_blocks,
    forward_cached,
    head_logits,
    inference_params,
    next_token,
)
from .sampling import (
    SamplingConfig,
    SamplingError,
    advance_contexts,
    check_generation_inputs,
    crop_context,
    decode_rows,
    resolve_config,
    row_rngs,
)


def rows_bias(positions: np.ndarray) -> np.ndarray:
    """(B,1,1,L) additive mask, L = max position + 1: 0 for keys j <= positions[b], -inf after
    (one per decode step, shared by every layer)."""
    xp = get_array_module(positions)
    L = int(positions.max()) + 1
    beyond = xp.arange(L)[None, :] > positions[:, None]  # (B, L): keys after the row's query
    return xp.where(beyond, -np.inf, 0.0).astype(np.float32)[:, None, None, :]


def rows_attention_forward(qkv: np.ndarray, n_head: int, k_cache: np.ndarray,
                           v_cache: np.ndarray, positions: np.ndarray,
                           bias: np.ndarray | None = None) -> np.ndarray:
    """One new position per row, row b's at positions[b], attending to its keys 0..positions[b].

    Shapes: qkv (B,1,(NH+2KV)hs), k_cache, v_cache (B,KV,S,hs) (KV < NH: grouped-query
            attention, as generate.cached_attention_forward), positions (B,) ints, bias
            rows_bias(positions) or None (computed here) -> out (B,1,C).
            Writes each row's key and value at its own position.
    Math:   S[b, j] = q_b . K[b, j] / sqrt(hs), = -inf for j > positions[b]
            y_b = sum_j softmax_j(S[b])_j V[b, j]       (the masked keys get weight exactly 0)
    """
    xp = get_array_module(qkv)
    B = qkv.shape[0]
    KV = k_cache.shape[1]
    q, k, v = split_heads(qkv, n_head, KV)  # (B,NH,1,hs), 2 x (B,KV,1,hs)
    hs = q.shape[-1]
    rows = xp.arange(B)
    k_cache[rows, :, positions] = k[:, :, 0]  # (B,KV,hs) into row b, position positions[b]
    v_cache[rows, :, positions] = v[:, :, 0]
    bias = rows_bias(positions) if bias is None else bias
    L = bias.shape[-1]
    K, V = k_cache[:, :, None, :L], v_cache[:, :, None, :L]  # (B,KV,1,L,hs) views
    att = by_group(q, KV) @ K.swapaxes(-1, -2)  # (B,KV,G,1,hs) @ (B,KV,1,hs,L) -> (..,1,L)
    att = att.reshape(B, n_head, 1, L)
    att *= 1.0 / math.sqrt(hs)
    att += bias  # -inf after the row's position: exp gives exactly 0 there
    att -= att.max(axis=-1, keepdims=True)  # softmax along keys, as cached_attention_forward
    xp.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)
    y = by_group(att, KV) @ V  # (B,KV,G,1,L) @ (B,KV,1,L,hs) -> (B,KV,G,1,hs)
    return y.reshape(B, 1, n_head * hs)  # re-merge heads (T = 1: the same memory order)


class BatchDecoder:
    """Next-token logits of B growing sequences, with or without the KV cache.

    `contexts[b]` is what the model sees of row b (its last block_size tokens); `logits`
    (B, V) on the host are for the token after each. append(tokens) moves every row whose
    token is not None one step (None: a finished row, left as it is). Without the cache each
    step is one model.forward over the right-padded contexts, read at each row's last token.
    """

    def __init__(self, model: Any, prompts: Sequence[Sequence[int]], use_kv_cache: bool = True):
        self.model = model
        self.block_size = model.config.block_size
        self.contexts = [crop_context(p, self.block_size) for p in prompts]
        B = len(self.contexts)
        self.cache = KVCache(model.config, B, model.dtype, model.xp) if use_kv_cache else None
        self.params = _batch_layout(inference_params(model), model.xp) if use_kv_cache else None
        self.logits = self._full()

    def append(self, tokens: Sequence[int | None]) -> np.ndarray:
        step, crop = advance_contexts(self.contexts, tokens, self.block_size)
        if self.cache is None:
            self.logits = self._full()
            return self.logits
        if step:
            self._step(tokens, step)
        for b in crop:  # after the step, which wrote junk into these rows
            self.logits[b] = self._prefill_row(b)
        return self.logits

    def _padded(self) -> tuple[np.ndarray, np.ndarray]:
        """The contexts right-padded with token 0 to the longest: (B, Lmax), lengths (B,)."""
        lengths = np.array([len(c) for c in self.contexts])
        idx = np.zeros((len(self.contexts), lengths.max()), dtype=np.int64)
        for b, c in enumerate(self.contexts):
            idx[b, :len(c)] = c
        return idx, lengths

    def _full(self) -> np.ndarray:
        """Logits after every row's last token, from scratch (prefill, or no cache)."""
        idx, lengths = self._padded()
        xp = self.model.xp
        rows, last = xp.asarray(np.arange(len(lengths))), xp.asarray(lengths - 1)
        if self.cache is None:
            logits = self.model.forward(idx)[0]  # (B,Lmax,V)
            return to_numpy(logits[rows, last])
        self.cache.reset()
        P, cfg = self.params, self.model.config
        # forward_cached's prefill, but the head only on each row's last real position
        x, _ = embedding_forward(xp.asarray(idx), P["transformer.wte.weight"],
                                 P.get("transformer.wpe.weight"))  # positions 0..Lmax-1
        rope = self.model.rope_rows(0, idx.shape[1]) if cfg.position == "rope" else None
        x = forward_blocks(self.model, x, P, lambda i, qkv: cached_attention_forward(
            qkv, cfg.n_head, self.cache.k[i], self.cache.v[i], 0), rope)
        self.cache.length = idx.shape[1]
        x = x[rows, last][:, None]  # (B,1,C): each row's last real position
        return to_numpy(head_logits(self.model, x, P)[:, 0])

    def _step(self, tokens: Sequence[int | None], step: list[int]) -> None:
        """One position for every row; rows not in `step` get a dummy token at a clamped
        position, and their results are dropped."""
        xp, P, cfg = self.model.xp, self.params, self.model.config
        B = len(self.contexts)
        tok = np.array([tokens[b] if b in step else 0 for b in range(B)])
        # row b's new token sits at position len(context) - 1 (the context includes it)
        pos = np.array([min(len(c) - 1, self.block_size - 1) for c in self.contexts])
        tok_d, pos_d = xp.asarray(tok), xp.asarray(pos)
        x = P["transformer.wte.weight"][tok_d][:, None]  # (B,1,C)
        rope = None
        if cfg.position == "rope":  # row b's q and k turned by its own position pos[b]
            cos, sin = self.model.rope_rows(0, self.block_size)  # (block_size, 1, hs/2)
            rope = cos[pos_d][:, None], sin[pos_d][:, None]  # (B,1,1,hs/2) vs (B,1,H,hs/2)
        else:
            x = x + P["transformer.wpe.weight"][pos_d][:, None]
        bias = rows_bias(pos_d)  # one mask for every layer of this step
        x = forward_blocks(self.model, x, P, lambda i, qkv: rows_attention_forward(
            qkv, cfg.n_head, self.cache.k[i], self.cache.v[i], pos_d, bias), rope)
        logits = to_numpy(head_logits(self.model, x, P)[:, 0])  # (B,V)
        self.logits[step] = logits[step]

    def _prefill_row(self, b: int) -> np.ndarray:
        """Rebuild row b's cache from its (cropped) context alone; its next-token logits."""
        idx = np.array([self.contexts[b]])
        return to_numpy(forward_cached(self.model, idx, self.cache.row(b), last_only=True,
                                       params=self.params)[0, -1])


def _batch_layout(params: dict[str, np.ndarray], xp: Any) -> dict[str, np.ndarray]:
    """The weights of the Linear layers (and a tied or untied head) stored column-major: each
    decode step multiplies only B rows by them, and OpenBLAS's small-M sgemm runs
    x @ W.T about 2x faster when W.T is row-major ("NN") than on the (out, in) layout ("NT"):
    at 6L-384, 16 rows, 1.1 vs 2.1 ms per block (one thread). A copy of each weight, once
    per generation; the values, and so the logits, are unchanged."""
    out = dict(params)
    for k, v in params.items():
        if v.ndim == 2 and k != "transformer.wpe.weight":
            out[k] = xp.asfortranarray(v)
    return out


def generate_batch(
    model: Any,
    prompts: Sequence[Sequence[int] | np.ndarray],
    config: SamplingConfig | None = None,
    *,
    rngs: Sequence[np.random.Generator] | None = None,
    **settings: Any,
) -> list[list[int]]:
    """The tokens generated after each of the B prompts, decoded together.

    The settings and rules of generate() (sampling.py), per row: a stop id ends that row (and
    is not returned), max_new_tokens bounds each row, the repetition penalty counts the row's
    own prompt and tokens. `rngs`: one Generator per row (default row_rngs(config.seed, B)).
    """
    config = resolve_config(config, settings)
    if len(prompts) == 0:
        raise SamplingError("generate_batch needs at least one prompt")
    checked = [check_generation_inputs(p, config, model.config.vocab_size) for p in prompts]
    rngs = row_rngs(config.seed, len(checked)) if rngs is None else list(rngs)
    if len(rngs) != len(checked):
        raise SamplingError(f"{len(checked)} prompts need as many generators, got {len(rngs)}")
    return _generate_batch(model, checked, config, rngs)


def _generate_batch(model: Any, prompts: list[list[int]], config: SamplingConfig,
                    rngs: list[np.random.Generator]) -> list[list[int]]:
    if config.max_new_tokens == 0:
        return [[] for _ in prompts]
    decoder = BatchDecoder(model, prompts, config.use_kv_cache)
    seen = np.zeros((len(prompts), model.config.vocab_size), dtype=bool)
    for b, p in enumerate(prompts):
        seen[b, p] = True
    return decode_rows(decoder, seen, next_token, config, rngs)
