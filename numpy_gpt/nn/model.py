"""GPT-2 style decoder-only transformer in NumPy, with a hand-written backward pass.

    idx (B,T) -> wte[idx] + wpe[:T] -> dropout -> n_layer x Block -> ln_f -> lm_head -> logits
    Block:  x = x + dropout(c_proj(attention(c_attn(ln_1(x)))))
            x = x + dropout(mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))))

Llama-shaped blocks are the same lines with other layers, chosen by the config (DESIGN.md):
norm="rmsnorm" (ln_* are RMSNorms), position="rope" (no wpe; q and k of c_attn's output are
turned by RoPE before the attention), mlp="swiglu" (mlp.c_proj(silu(mlp.c_gate(h)) *
mlp.c_fc(h))), n_kv_head < n_head (grouped-query attention inside the attention kernels).

`forward` returns the cache of every layer; `backward(cache)` calls the layers' backward
functions in exact reverse order (STYLE.md C4) and sums fan-out explicitly (C3): each residual
stream gradient is the sum of its skip path and its branch, and the tied wte gets the
embedding's gradient plus lm_head's.

Parameters live in `self.params`, a flat dict keyed by the canonical GPT-2/nanoGPT names
(DESIGN.md), the live arrays the model computes with. dtype float32 (speed) or float64
(exactness, for gradient checks and parity). device "cpu" (NumPy) or "cuda" (the same code on
CuPy, see device.py): token ids and dropout masks may come from the host; logits, caches
and gradients stay on the model's device.

Attention runs layers/attention.py (the (T, T) probabilities kept for backward) or the tiled
layers/flash_attention.py (O(T) memory, the same function to rounding), as config.attention
and config.tiled_attention(T, p) decide per forward.

The caches, the initial weights, the dropout masks, the norm chosen by config and the
token-id checks are model_parts.py's (re-exported here).

Deliberately omits: KV-cache decoding (generate.py), the optimizer (optim.py).
Ref: nanoGPT model.py; llm.c train_gpt2.c gpt2_forward/gpt2_backward.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import checkpoint
from .config import GPTConfig, param_shapes
from .device import DEVICES, array_module, to_numpy
from .layers import (
    FlashAttentionCache,
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    flash_attention_backward,
    flash_attention_forward,
    gelu_exact_backward,
    gelu_exact_forward,
    gelu_recompute,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    linear_backward,
    linear_forward,
    lora_backward,
    lora_forward,
    rmsnorm_backward,
    rope_backward,
    rope_forward,
    rope_tables,
    swiglu_backward,
    swiglu_forward,
    swiglu_recompute,
)
from .layers.rmsnorm import RMSNormCache
from .layers.rope import qk_heads
from .lora import LoRAConfig, init_lora_params, lora_param_shapes, merged_params
from .model_parts import (  # all re-exported: they lived here before
    BlockCache,
    GPTCache,
    check_token_ids,
    init_params,
    make_dropout_masks,
    norm_forward,
)

DTYPES = ("float32", "float64")


class GPT:
    """The reference model. See the module docstring; DESIGN.md for the API contract."""

    def __init__(self, config: GPTConfig, dtype: str = "float32", seed: int = 0,
                 device: str = "cpu"):
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.config = config
        self.dtype = np.dtype(dtype)
        self.device, self.xp = device, array_module(device)  # xp: numpy, or cupy on "cuda"
        # drawn on the host, so one seed gives one model on every device
        params = init_params(config, self.dtype, np.random.default_rng(seed))
        self.params = {k: self.xp.asarray(p) for k, p in params.items()}
        self.lora: LoRAConfig | None = None  # set by add_lora
        self.lora_params: dict[str, np.ndarray] = {}  # key.lora_A.weight / key.lora_B.weight

    def to(self, device: str) -> GPT:
        """Move the parameters (and adapters) to `device` ("cpu" or "cuda"); returns self."""
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if device != self.device:
            self.xp = array_module(device)
            move = to_numpy if device == "cpu" else self.xp.asarray  # both copy across
            self.params = {k: move(p) for k, p in self.params.items()}
            self.lora_params = {k: move(p) for k, p in self.lora_params.items()}
            self.device = device
        return self

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
        attention: str | None = None,
    ) -> tuple[np.ndarray, float | None, GPTCache]:
        """idx (B,T) int token ids, targets (B,T) int or None -> (logits (B,T,V), loss, cache).

        `attention` ("full" | "tiled" | "auto") overrides config.attention for this pass, e.g.
        "full" for a cache that holds the attention probabilities (attention_maps.py).

        Train mode with config.dropout > 0 applies dropout, with `dropout_masks` when given
        (names from config.dropout_mask_shapes) or masks drawn from `rng`. Eval mode (the
        default) never drops. loss is the mean cross-entropy over targets != -100.
        """
        cfg, P, xp = self.config, self.params, self.xp
        idx = xp.asarray(check_token_ids(cfg, idx, "idx"))  # checked on the host, then moved
        B, T = idx.shape
        if targets is not None:
            targets = xp.asarray(check_token_ids(cfg, targets, "targets", shape=(B, T)))
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        p = cfg.dropout if train else 0.0
        p_lora = self.lora.dropout if train and self.lora is not None else 0.0
        masks: dict[str, np.ndarray | None] = {}
        if p > 0.0 or p_lora > 0.0:
            if dropout_masks is None:
                if rng is None:
                    raise ValueError("train mode with dropout > 0 needs rng or dropout_masks")
                dropout_masks = make_dropout_masks(cfg, B, T, rng, self.lora)
            masks = {k: xp.asarray(m) for k, m in dropout_masks.items()}
        gelu_forward = gelu_tanh_forward if cfg.gelu == "tanh" else gelu_exact_forward
        if attention is not None and attention != cfg.attention:
            cfg = cfg.replace(attention=attention)  # validated: "tiled" refuses dropout
        tiled = cfg.tiled_attention(T, p)  # config.attention: O(T) or O(T^2) attention memory

        x, emb = embedding_forward(idx, P["transformer.wte.weight"],
                                   P.get("transformer.wpe.weight"))  # None with RoPE
        x, emb_drop = dropout_forward(x, masks.get("transformer.drop"), p)
        KV = cfg.kv_heads
        blocks = []
        for i in range(cfg.n_layer):
            h = f"transformer.h.{i}."
            a, ln_1 = self._norm(x, h + "ln_1")
            a, c_attn = self._linear(a, h + "attn.c_attn", masks, p_lora)
            rope = None
            if cfg.position == "rope":  # turn q and k (positions 0..T-1) inside the fused qkv,
                qk = qk_heads(a, cfg.n_head, KV)  # a view; c_attn's fresh output, held by no
                qk[...], rope = rope_forward(qk, *self.rope_rows(0, T), cfg.rope_layout)  # cache
            if tiled:
                a, attn = flash_attention_forward(a, cfg.n_head, cfg.attention_tile_for(T), KV)
            else:
                a, attn = attention_forward(a, cfg.n_head, masks.get(h + "attn.attn_dropout"), p,
                                            KV)
            a, attn_proj = self._linear(a, h + "attn.c_proj", masks, p_lora)
            a, attn_drop = dropout_forward(a, masks.get(h + "attn.resid_dropout"), p)
            x += a  # residual 1, in place: no cache holds the residual stream x
            m, ln_2 = self._norm(x, h + "ln_2")
            c_gate = None
            if cfg.mlp == "swiglu":  # two paths from m: the gate and the up projection
                g, c_gate = self._linear(m, h + "mlp.c_gate", masks, p_lora)
                m, c_fc = self._linear(m, h + "mlp.c_fc", masks, p_lora)
                m, act = swiglu_forward(g, m)
            else:
                m, c_fc = self._linear(m, h + "mlp.c_fc", masks, p_lora)
                m, act = gelu_forward(m)
            m, mlp_proj = self._linear(m, h + "mlp.c_proj", masks, p_lora)
            if mlp_proj[1] is None:  # no LoRA path reads it: backward rebuilds the activation's
                mlp_proj = (mlp_proj[0]._replace(x=None), None)  # output (*_recompute)
            m, mlp_drop = dropout_forward(m, masks.get(h + "mlp.dropout"), p)
            x += m  # residual 2
            blocks.append(BlockCache(ln_1, c_attn, rope, attn, attn_proj, attn_drop,
                                     ln_2, c_gate, c_fc, act, mlp_proj, mlp_drop))
        x, ln_f = self._norm(x, "transformer.ln_f")
        logits, lm_head = linear_forward(x, self._head_weight(), None)  # (B,T,C) -> (B,T,V)

        loss, loss_cache = None, None
        if targets is not None:
            loss, loss_cache = cross_entropy_forward(logits, targets, label_smoothing)
        return logits, loss, GPTCache(emb, emb_drop, blocks, ln_f, lm_head, loss_cache)

    def backward(self, cache: GPTCache, dloss: float = 1.0, *, release: bool = False
                 ) -> dict[str, np.ndarray]:
        """Gradients of the loss wrt every parameter: a dict with exactly self.params' keys
        (then self.lora_params' keys when an adapter is attached).

        Needs a cache from forward(..., targets). dloss scales the loss (e.g. 1/n_micro for
        gradient accumulation). The steps mirror forward, bottom to top. With release=True
        each block's activations are let go as soon as its backward is done, as autograd
        frees saved tensors, which lowers peak memory; the cache cannot be used again.
        """
        if cache.loss is None:
            raise ValueError("backward needs a forward pass with targets "
                             "(the loss to differentiate)")
        cfg = self.config
        grads: dict[str, np.ndarray | None] = {}
        gelu_backward = gelu_tanh_backward if cfg.gelu == "tanh" else gelu_exact_backward

        dlogits = cross_entropy_backward(cache.loss, dloss)
        dx, dhead, _ = linear_backward(dlogits, cache.lm_head)
        dx = self._norm_backward(dx, cache.ln_f, "transformer.ln_f", grads)
        for i in reversed(range(cfg.n_layer)):
            h, c = f"transformer.h.{i}.", cache.blocks[i]
            # residual 2: x_out = x_mid + m, so dx reaches x_mid directly and through the MLP
            dm = dropout_backward(dx, c.mlp_drop)
            mlp_proj, c_act = c.mlp_proj, c.act
            if mlp_proj[0].x is None:  # forward let the activation's output go: rebuild it
                if c.c_gate is not None:  # c_act: s and silu for swiglu_backward too
                    hidden, c_act = swiglu_recompute(c.act)
                else:
                    hidden, c_act = gelu_recompute(c.act)
                mlp_proj = (mlp_proj[0]._replace(x=hidden), None)
            dm = self._linear_backward(dm, mlp_proj, h + "mlp.c_proj", grads)
            del mlp_proj
            if c.c_gate is not None:  # SwiGLU: h = silu(g) * u, u = c_fc(m), g = c_gate(m)
                dg, dm = swiglu_backward(dm, c_act)
                dm = self._linear_backward(dm, c.c_fc, h + "mlp.c_fc", grads)
                dm += self._linear_backward(dg, c.c_gate, h + "mlp.c_gate", grads)  # fan-out
            else:
                dm = gelu_backward(dm, c_act)
                dm = self._linear_backward(dm, c.c_fc, h + "mlp.c_fc", grads)
            dm = self._norm_backward(dm, c.ln_2, h + "ln_2", grads)
            dx += dm  # fan-out of x_mid: skip path + MLP branch
            # residual 1: x_mid = x_in + a
            da = dropout_backward(dx, c.attn_drop)
            da = self._linear_backward(da, c.attn_proj, h + "attn.c_proj", grads)
            if isinstance(c.attn, FlashAttentionCache):  # forward ran the tiled kernel
                da = flash_attention_backward(da, c.attn)
            else:
                da = attention_backward(da, c.attn)
            if c.rope is not None:  # forward turned q and k by +angle: turn dq, dk by -angle
                dqk = qk_heads(da, cfg.n_head, cfg.kv_heads)  # view of da, fresh from attention
                dqk[...] = rope_backward(dqk, c.rope)
            da = self._linear_backward(da, c.c_attn, h + "attn.c_attn", grads)
            da = self._norm_backward(da, c.ln_1, h + "ln_1", grads)
            dx += da  # fan-out of x_in: skip path + attention branch
            if release:
                cache.blocks[i] = c = None
        dx = dropout_backward(dx, cache.emb_drop)
        dwte, grads["transformer.wpe.weight"] = embedding_backward(dx, cache.emb)  # None: RoPE
        if cfg.tie_weights:
            dwte += dhead  # tied: wte is used twice (embedding and lm_head), so grads add
        else:
            grads["lm_head.weight"] = dhead
        grads["transformer.wte.weight"] = dwte
        # canonical order, then the LoRA parameters; drops the None of bias=False
        return {name: grads[name] for name in (*self.params, *self.lora_params)}

    __call__ = forward

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, tokenizer: Any = None, **kwargs: Any) -> None:
        """Write the checkpoint folder (config.json + model.safetensors [+ tokenizer.json])."""
        checkpoint.save_checkpoint(path, self.config, self.params, tokenizer=tokenizer, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: str | None = None, device: str = "cpu"
             ) -> GPT:
        """Load a checkpoint folder written by either twin; dtype defaults to the stored one."""
        config, params, meta = checkpoint.load_checkpoint(path)
        return cls.from_params(config, params, dtype or meta.get("dtype", "float32"), device)

    @classmethod
    def from_params(cls, config: GPTConfig, params: dict[str, np.ndarray],
                    dtype: str = "float32", device: str = "cpu") -> GPT:
        """Wrap existing arrays (cast to dtype, copied), e.g. weights imported from GPT-2."""
        model = cls.__new__(cls)
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        model.config, model.dtype = config, np.dtype(dtype)
        model.device, model.xp = device, array_module(device)
        model.params = {k: model.xp.array(params[k], dtype=model.dtype)
                        for k in param_shapes(config)}
        model.lora, model.lora_params = None, {}
        return model

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without wpe (and without wte when untied), as nanoGPT."""
        n = sum(p.size for p in self.params.values())
        if non_embedding and "transformer.wpe.weight" in self.params:  # no table with RoPE
            n -= self.params["transformer.wpe.weight"].size
        return n

    # ------------------------------------------------------------------ LoRA

    def add_lora(self, lora: LoRAConfig, seed: int = 0) -> None:
        """Attach fresh LoRA adapters (B = 0: the model's outputs are unchanged)."""
        self.lora = lora
        params = init_lora_params(self.config, lora, self.dtype, np.random.default_rng(seed))
        self.lora_params = {k: self.xp.asarray(p) for k, p in params.items()}

    def set_lora(self, lora: LoRAConfig, lora_params: dict[str, np.ndarray]) -> None:
        """Attach trained adapters (e.g. from numpy_gpt.nn.lora.load_adapter)."""
        expected = lora_param_shapes(self.config, lora)
        if set(lora_params) != set(expected) or any(
                tuple(lora_params[k].shape) != s for k, s in expected.items()):
            raise ValueError("the adapter's tensors do not match this model and LoRA config")
        self.lora = lora
        self.lora_params = {k: self.xp.array(lora_params[k], dtype=self.dtype) for k in expected}

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights (W += alpha/r * B A) and drop them."""
        if self.lora is not None:
            self.params = merged_params(self.params, self.lora_params, self.lora)
            self.lora, self.lora_params = None, {}

    def _linear(self, x: np.ndarray, key: str, masks: dict, p_lora: float
                ) -> tuple[np.ndarray, tuple]:
        """The Linear `key`, plus its LoRA update when an adapter targets it."""
        P, L = self.params, self.lora_params
        out, lin = linear_forward(x, P[key + ".weight"], P.get(key + ".bias"))
        lora = None
        if key + ".lora_A.weight" in L:
            delta, lora = lora_forward(x, L[key + ".lora_A.weight"], L[key + ".lora_B.weight"],
                                       self.lora.scale, masks.get(key + ".lora_dropout"), p_lora)
            out += delta
        return out, (lin, lora)

    def _linear_backward(self, dout: np.ndarray, cache: tuple, key: str, grads: dict
                         ) -> np.ndarray:
        """Backward of _linear: fills grads[key.*] and returns dx (both paths summed)."""
        lin, lora = cache
        dx, grads[key + ".weight"], grads[key + ".bias"] = linear_backward(dout, lin)
        if lora is not None:  # x fans out into the frozen Linear and the LoRA path
            dx_lora, grads[key + ".lora_A.weight"], grads[key + ".lora_B.weight"] = (
                lora_backward(dout, lora))
            dx += dx_lora
        return dx

    # ------------------------------------------------------------------ helpers

    def _norm(self, x: np.ndarray, key: str) -> tuple[np.ndarray, Any]:
        return norm_forward(self.config, self.params, x, key)

    def _norm_backward(self, dout: np.ndarray, cache: Any, key: str, grads: dict
                       ) -> np.ndarray:
        """Backward of _norm: fills grads[key.weight] (and .bias for LayerNorm), returns dx."""
        if isinstance(cache, RMSNormCache):
            dx, grads[key + ".weight"] = rmsnorm_backward(dout, cache)
        else:
            dx, grads[key + ".weight"], grads[key + ".bias"] = layernorm_backward(dout, cache)
        return dx

    def rope_rows(self, offset: int, T: int) -> tuple[np.ndarray, np.ndarray]:
        """RoPE's cos and sin for positions offset..offset+T-1, as (T, 1, hs/2): they
        broadcast over the batch and the heads of a (B, T, H, hs) view (a KV cache's new
        positions start at its offset; generation indexes rows by position too)."""
        cfg = self.config
        cos, sin = rope_tables(cfg.block_size, cfg.head_size, float(cfg.rope_theta), self.dtype,
                               self.xp)
        return cos[offset:offset + T, None], sin[offset:offset + T, None]

    def _head_weight(self) -> np.ndarray:
        key = "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"
        return self.params[key]
