"""GPT-2 style decoder-only transformer in NumPy, with a hand-written backward pass.

    idx (B,T) -> wte[idx] + wpe[:T] -> dropout -> n_layer x Block -> ln_f -> lm_head -> logits
    Block:  x = x + dropout(c_proj(attention(c_attn(ln_1(x)))))
            x = x + dropout(mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))))

`forward` returns the cache of every layer; `backward(cache)` calls the layers' backward
functions in exact reverse order (STYLE.md C4) and sums fan-out explicitly (C3): each residual
stream gradient is the sum of its skip path and its branch, and the tied wte gets the
embedding's gradient plus lm_head's.

Parameters live in `self.params`, a flat dict keyed by the canonical GPT-2/nanoGPT names
(DESIGN.md), the live arrays the model computes with. dtype float32 (speed) or float64
(exactness, for gradient checks and parity).

Deliberately omits: KV-cache decoding (generate.py), the optimizer (optim.py).
Ref: nanoGPT model.py; llm.c train_gpt2.c gpt2_forward/gpt2_backward.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from . import checkpoint
from .config import GPTConfig, dropout_mask_shapes, param_shapes
from .layers import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    gelu_exact_backward,
    gelu_exact_forward,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)
from .layers.loss import IGNORE_INDEX

DTYPES = ("float32", "float64")


class BlockCache(NamedTuple):
    ln_1: Any
    c_attn: Any
    attn: Any
    attn_proj: Any
    attn_drop: Any
    ln_2: Any
    c_fc: Any
    gelu: Any
    mlp_proj: Any
    mlp_drop: Any


class GPTCache(NamedTuple):
    emb: Any
    emb_drop: Any
    blocks: list[BlockCache]
    ln_f: Any
    lm_head: Any
    loss: Any  # None when forward had no targets


def make_dropout_masks(
    config: GPTConfig, B: int, T: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Fresh bool keep-masks for every dropout site (config.dropout_mask_shapes), True = keep.

    Drawn in forward order from `rng`, so one seed gives one set of masks; pass the same dict
    to both twins to compare them in train mode.
    """
    p = config.dropout
    return {
        name: rng.random(shape, dtype=np.float32) >= p
        for name, shape in dropout_mask_shapes(config, B, T).items()
    }


class GPT:
    """The reference model. See the module docstring; DESIGN.md for the API contract."""

    def __init__(self, config: GPTConfig, dtype: str = "float32", seed: int = 0):
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.config = config
        self.dtype = np.dtype(dtype)
        self.params = init_params(config, self.dtype, np.random.default_rng(seed))

    # ------------------------------------------------------------------ forward / backward

    def forward(
        self,
        idx: Any,
        targets: Any = None,
        *,
        label_smoothing: float = 0.0,
        train: bool = False,
        rng: np.random.Generator | None = None,
        dropout_masks: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, float | None, GPTCache]:
        """idx (B,T) int token ids, targets (B,T) int or None -> (logits (B,T,V), loss, cache).

        Train mode with config.dropout > 0 applies dropout, with `dropout_masks` when given
        (names from config.dropout_mask_shapes) or masks drawn from `rng`. Eval mode (the
        default) never drops. loss is the mean cross-entropy over targets != -100.
        """
        cfg, P = self.config, self.params
        idx = self._check_ids(idx, "idx")
        B, T = idx.shape
        if targets is not None:
            targets = self._check_ids(targets, "targets", shape=(B, T))
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        p = cfg.dropout if train else 0.0
        masks: dict[str, np.ndarray | None] = {}
        if p > 0.0:
            if dropout_masks is None:
                if rng is None:
                    raise ValueError("train mode with dropout > 0 needs rng or dropout_masks")
                dropout_masks = make_dropout_masks(cfg, B, T, rng)
            masks = dict(dropout_masks)
        gelu_forward = gelu_tanh_forward if cfg.gelu == "tanh" else gelu_exact_forward

        x, emb = embedding_forward(idx, P["transformer.wte.weight"], P["transformer.wpe.weight"])
        x, emb_drop = dropout_forward(x, masks.get("transformer.drop"), p)
        blocks = []
        for i in range(cfg.n_layer):
            h = f"transformer.h.{i}."
            a, ln_1 = layernorm_forward(x, P[h + "ln_1.weight"], P.get(h + "ln_1.bias"),
                                        cfg.layer_norm_eps)
            a, c_attn = linear_forward(a, P[h + "attn.c_attn.weight"], P.get(h + "attn.c_attn.bias"))
            a, attn = attention_forward(a, cfg.n_head, masks.get(h + "attn.attn_dropout"), p)
            a, attn_proj = linear_forward(a, P[h + "attn.c_proj.weight"],
                                          P.get(h + "attn.c_proj.bias"))
            a, attn_drop = dropout_forward(a, masks.get(h + "attn.resid_dropout"), p)
            x = x + a  # residual 1
            m, ln_2 = layernorm_forward(x, P[h + "ln_2.weight"], P.get(h + "ln_2.bias"),
                                        cfg.layer_norm_eps)
            m, c_fc = linear_forward(m, P[h + "mlp.c_fc.weight"], P.get(h + "mlp.c_fc.bias"))
            m, gelu = gelu_forward(m)
            m, mlp_proj = linear_forward(m, P[h + "mlp.c_proj.weight"],
                                         P.get(h + "mlp.c_proj.bias"))
            m, mlp_drop = dropout_forward(m, masks.get(h + "mlp.dropout"), p)
            x = x + m  # residual 2
            blocks.append(BlockCache(ln_1, c_attn, attn, attn_proj, attn_drop,
                                     ln_2, c_fc, gelu, mlp_proj, mlp_drop))
        x, ln_f = layernorm_forward(x, P["transformer.ln_f.weight"], P.get("transformer.ln_f.bias"),
                                    cfg.layer_norm_eps)
        logits, lm_head = linear_forward(x, self._head_weight(), None)  # (B,T,C) -> (B,T,V)

        loss, loss_cache = None, None
        if targets is not None:
            loss, loss_cache = cross_entropy_forward(logits, targets, label_smoothing)
        return logits, loss, GPTCache(emb, emb_drop, blocks, ln_f, lm_head, loss_cache)

    def backward(self, cache: GPTCache, dloss: float = 1.0) -> dict[str, np.ndarray]:
        """Gradients of the loss wrt every parameter: a dict with exactly self.params' keys.

        Needs a cache from forward(..., targets). dloss scales the loss (e.g. 1/n_micro for
        gradient accumulation). The steps mirror forward, bottom to top.
        """
        if cache.loss is None:
            raise ValueError("backward needs a forward pass with targets (the loss to differentiate)")
        cfg = self.config
        grads: dict[str, np.ndarray | None] = {}
        gelu_backward = gelu_tanh_backward if cfg.gelu == "tanh" else gelu_exact_backward

        dlogits = cross_entropy_backward(cache.loss, dloss)
        dx, dhead, _ = linear_backward(dlogits, cache.lm_head)
        dx, grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"] = (
            layernorm_backward(dx, cache.ln_f))
        for i in reversed(range(cfg.n_layer)):
            h, c = f"transformer.h.{i}.", cache.blocks[i]
            # residual 2: x_out = x_mid + m, so dx reaches x_mid directly and through the MLP
            dm = dropout_backward(dx, c.mlp_drop)
            dm, grads[h + "mlp.c_proj.weight"], grads[h + "mlp.c_proj.bias"] = (
                linear_backward(dm, c.mlp_proj))
            dm = gelu_backward(dm, c.gelu)
            dm, grads[h + "mlp.c_fc.weight"], grads[h + "mlp.c_fc.bias"] = (
                linear_backward(dm, c.c_fc))
            dm, grads[h + "ln_2.weight"], grads[h + "ln_2.bias"] = layernorm_backward(dm, c.ln_2)
            dx = dx + dm  # fan-out of x_mid: skip path + MLP branch
            # residual 1: x_mid = x_in + a
            da = dropout_backward(dx, c.attn_drop)
            da, grads[h + "attn.c_proj.weight"], grads[h + "attn.c_proj.bias"] = (
                linear_backward(da, c.attn_proj))
            da = attention_backward(da, c.attn)
            da, grads[h + "attn.c_attn.weight"], grads[h + "attn.c_attn.bias"] = (
                linear_backward(da, c.c_attn))
            da, grads[h + "ln_1.weight"], grads[h + "ln_1.bias"] = layernorm_backward(da, c.ln_1)
            dx = dx + da  # fan-out of x_in: skip path + attention branch
        dx = dropout_backward(dx, cache.emb_drop)
        dwte, grads["transformer.wpe.weight"] = embedding_backward(dx, cache.emb)
        if cfg.tie_weights:
            dwte += dhead  # tied: wte is used twice (embedding and lm_head), so grads add
        else:
            grads["lm_head.weight"] = dhead
        grads["transformer.wte.weight"] = dwte
        return {name: grads[name] for name in self.params}  # canonical order; drops bias=None

    __call__ = forward

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, tokenizer: Any = None, **kwargs: Any) -> None:
        """Write the checkpoint folder (config.json + model.safetensors [+ tokenizer.json])."""
        checkpoint.save_checkpoint(path, self.config, self.params, tokenizer=tokenizer, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: str | None = None) -> GPT:
        """Load a checkpoint folder written by either twin; dtype defaults to the stored one."""
        config, params, meta = checkpoint.load_checkpoint(path)
        return cls.from_params(config, params, dtype or meta.get("dtype", "float32"))

    @classmethod
    def from_params(cls, config: GPTConfig, params: dict[str, np.ndarray],
                    dtype: str = "float32") -> GPT:
        """Wrap existing arrays (cast to dtype, copied), e.g. weights imported from GPT-2."""
        model = cls.__new__(cls)
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        model.config, model.dtype = config, np.dtype(dtype)
        model.params = {k: np.array(params[k], dtype=model.dtype) for k in param_shapes(config)}
        return model

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without wpe (and without wte when untied), as nanoGPT."""
        n = sum(p.size for p in self.params.values())
        if non_embedding:
            n -= self.params["transformer.wpe.weight"].size
        return n

    # ------------------------------------------------------------------ helpers

    def _head_weight(self) -> np.ndarray:
        key = "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"
        return self.params[key]

    def _check_ids(self, ids: Any, what: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        ids = np.asarray(ids)
        cfg = self.config
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{what} must be integer token ids, got dtype {ids.dtype}")
        if ids.ndim != 2:
            raise ValueError(f"{what} must have shape (B, T), got {ids.shape}")
        if shape is not None and ids.shape != shape:
            raise ValueError(f"{what} has shape {ids.shape} but idx has shape {shape}")
        if ids.shape[1] > cfg.block_size:
            raise ValueError(
                f"{what} has T={ids.shape[1]} tokens but block_size is {cfg.block_size}; "
                "crop the sequence to the last block_size tokens"
            )
        if ids.size == 0:
            raise ValueError(f"{what} is empty (shape {ids.shape})")
        V = cfg.vocab_size
        is_target = what == "targets"
        bad = (ids >= V) | ((ids < 0) & ~(is_target & (ids == IGNORE_INDEX)))
        if bad.any():
            raise ValueError(
                f"{what} contains token id {int(ids[bad].flat[0])} outside [0, {V})"
                + (f"; use {IGNORE_INDEX} to ignore a target" if is_target else "")
            )
        return ids


def init_params(config: GPTConfig, dtype: np.dtype, rng: np.random.Generator
                ) -> dict[str, np.ndarray]:
    """GPT-2 initialization: N(0, 0.02) for weights and embeddings, residual projections
    (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2 n_layer)), zero biases, LayerNorm 1 and 0.

    Draws in float64 then casts, so one seed gives the same model in float32 and float64.
    Ref: GPT-2 paper §2.3; nanoGPT GPT._init_weights.
    """
    resid_std = 0.02 / math.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in param_shapes(config).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            value = np.ones(shape)
        elif name.endswith(".bias"):
            value = np.zeros(shape)
        elif name.endswith("c_proj.weight"):
            value = rng.normal(0.0, resid_std, size=shape)
        else:
            value = rng.normal(0.0, 0.02, size=shape)
        params[name] = value.astype(dtype)
    return params
