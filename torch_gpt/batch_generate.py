"""Batched generation with torch_gpt: B prompts of different lengths decoded together.

    model.eval()
    rows = generate_batch(model, [ids_a, ids_b, ids_c], max_new_tokens=100, greedy=True)

The twin of numpy_gpt/generation/batch_generate.py; read its docstring for the exact scheme (right
padding, per-row positions and key masks, one-row rebuild after a crop, per-row stops, one
np.random.Generator per row). Written here with torch ops and torch_gpt's own pieces
(forward_blocks, cached_attention, KVCache of torch_gpt/generate.py); only the settings,
prompt checks and row_rngs are shared (STYLE.md L2). Runs under torch.inference_mode on the
model's device, with optional autocast as generate() does.

Ref: HF transformers generate() with attention_mask; vLLM / Orca per-sequence cache lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from numpy_gpt.generation.sampling import (
    SamplingConfig,
    SamplingError,
    advance_contexts,
    check_generation_inputs,
    crop_context,
    decode_rows,
    resolve_config,
    row_rngs,
)

from .generate import (
    KVCache,
    cached_attention,
    embed,
    forward_blocks,
    forward_cached,
    grouped_attention,
    head_logits,
    next_token,
)
from .model import GPT
from .precision import autocast


def rows_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache,
                   layer: int, positions: torch.Tensor) -> torch.Tensor:
    """One new position per row, row b's at positions[b], attending to its keys 0..positions[b].
    Shapes: q (B,NH,1,hs), k, v (B,KV,1,hs), positions (B,) long -> (B,NH,1,hs); writes each
    row's key and value at its own position. Keys after a row's position get -inf: softmax
    weight 0."""
    B = q.size(0)
    rows = torch.arange(B, device=q.device)
    cache.k[layer][rows, :, positions] = k[:, :, 0]  # (B,KV,hs) into row b at positions[b]
    cache.v[layer][rows, :, positions] = v[:, :, 0]
    L = int(positions.max().item()) + 1
    K, V = cache.k[layer][:, :, :L], cache.v[layer][:, :, :L]  # (B,KV,L,hs)
    beyond = torch.arange(L, device=q.device)[None, :] > positions[:, None]  # (B, L)
    return grouped_attention(q, K, V, beyond[:, None, None, None, :])  # over (B,KV,G,1,L)


class BatchDecoder:
    """The twin of numpy_gpt.generation.batch_generate.BatchDecoder: `logits` (B, V) for the
    token after each row's context; append(tokens) moves the rows whose token is not None one
    step."""

    def __init__(self, model: GPT, prompts: Sequence[Sequence[int]], use_kv_cache: bool = True,
                 autocast_dtype: str | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.block_size = model.config.block_size
        self.contexts = [crop_context(list(p), self.block_size) for p in prompts]
        self.cache = KVCache(model.config.n_layer, self.block_size) if use_kv_cache else None
        self.logits = self._full()

    @torch.inference_mode()
    def append(self, tokens: Sequence[int | None]) -> torch.Tensor:
        step, crop = advance_contexts(self.contexts, tokens, self.block_size)
        if self.cache is None:
            self.logits = self._full()
            return self.logits
        with autocast(self.device, self.autocast_dtype):
            if step:
                self._step(tokens, step)
            for b in crop:  # after the step, which wrote junk into these rows
                self.logits[b] = forward_cached(
                    self.model, self._ids([self.contexts[b]]), self.cache.row(b),
                    last_only=True)[0, -1]
        return self.logits

    def _ids(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def _full(self) -> torch.Tensor:
        """Logits after every row's last token, from scratch (prefill, or no cache)."""
        lengths = [len(c) for c in self.contexts]
        idx = self._ids([c + [0] * (max(lengths) - len(c)) for c in self.contexts])  # right pad
        rows = torch.arange(len(lengths), device=self.device)
        last = torch.tensor(lengths, device=self.device) - 1
        with autocast(self.device, self.autocast_dtype):
            if self.cache is None:
                return self.model(idx)[0][rows, last].clone()
            self.cache.reset()
            x = embed(self.model, idx, torch.arange(idx.size(1), device=self.device))

            def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                       ) -> torch.Tensor:
                K, V = self.cache.append(i, k, v)
                return cached_attention(q, K, V, 0)

            x = forward_blocks(self.model, x, attend, self.model.rope(0, idx.size(1)))
            self.cache.length = idx.size(1)
            return head_logits(self.model, x[rows, last][:, None])[:, 0].clone()

    def _step(self, tokens: Sequence[int | None], step: list[int]) -> None:
        """One position for every row; rows not in `step` get a dummy token, results dropped."""
        B = len(self.contexts)
        tok = self._ids([[tokens[b] if b in step else 0 for b in range(B)]])[0]
        pos = self._ids([[min(len(c) - 1, self.block_size - 1) for c in self.contexts]])[0]
        x = embed(self.model, tok[:, None], pos[:, None])  # (B,1,C)
        rope = None
        if self.model.rope_cos is not None:  # row b turned by its own position: (B,1,1,hs/2)
            rope = tuple(t[pos][:, None, None]
                         for t in (self.model.rope_cos, self.model.rope_sin))
        x = forward_blocks(self.model, x, lambda i, q, k, v: rows_attention(
            q, k, v, self.cache, i, pos), rope)
        logits = head_logits(self.model, x)[:, 0]  # (B,V)
        sel = torch.tensor(step, device=self.device)
        self.logits[sel] = logits[sel].to(self.logits.dtype)


def generate_batch(
    model: GPT,
    prompts: Sequence[Sequence[int] | np.ndarray | torch.Tensor],
    config: SamplingConfig | None = None,
    *,
    rngs: Sequence[np.random.Generator] | None = None,
    autocast_dtype: str | None = None,
    **settings: Any,
) -> list[list[int]]:
    """The tokens generated after each of the B prompts, decoded together: the rules of
    numpy_gpt.generation.batch_generate.generate_batch. Call model.eval() first when it has
    dropout."""
    config = resolve_config(config, settings)
    if len(prompts) == 0:
        raise SamplingError("generate_batch needs at least one prompt")
    prompts = [p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p for p in prompts]
    checked = [check_generation_inputs(p, config, model.config.vocab_size) for p in prompts]
    if model.training and model.config.dropout > 0:
        raise SamplingError("the model is in training mode with dropout; call model.eval() "
                            "before generating")
    autocast(next(model.parameters()).device, autocast_dtype)  # checks the name, up front
    rngs = row_rngs(config.seed, len(checked)) if rngs is None else list(rngs)
    if len(rngs) != len(checked):
        raise SamplingError(f"{len(checked)} prompts need as many generators, got {len(rngs)}")
    if config.max_new_tokens == 0:
        return [[] for _ in checked]
    decoder = BatchDecoder(model, checked, config.use_kv_cache, autocast_dtype)
    seen = torch.zeros((len(checked), model.config.vocab_size), dtype=torch.bool,
                       device=decoder.device)
    for b, p in enumerate(checked):
        seen[b, torch.tensor(p, device=decoder.device)] = True
    return decode_rows(decoder, seen, next_token, config, rngs)
