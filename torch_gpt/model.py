"""GPT-2 style decoder-only transformer in idiomatic PyTorch: numpy_gpt's twin.

    idx (B,T) -> wte[idx] + wpe[:T] -> drop -> n_layer x Block -> ln_f -> lm_head -> logits
    Block:  x = x + attn.resid_dropout(attn.c_proj(attention(attn.c_attn(ln_1(x)))))
            x = x + mlp.dropout(mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))))

Llama-shaped blocks are the same classes with other choices (GPTConfig.norm, position, mlp,
n_kv_head; DESIGN.md): RMSNorm (nn.RMSNorm, weight only) for ln_1/ln_2/ln_f; no wpe, and
rotary embeddings applied to q and k (apply_rope: "halves" = Hugging Face's rotate_half,
"interleaved" = Meta's / llama2.c's complex pairs; the cos/sin tables are built once per
model in float64 and sliced by position, so a KV cache passes its offset); a SwiGLU MLP
c_proj(silu(c_gate(x)) * c_fc(x)); grouped-query attention, c_attn producing NH query heads
and n_kv_head key/value heads (SDPA with enable_gqa; the written-out path repeats K/V, which
is fine here: only numpy_gpt must not copy them).

Modules are named so that `state_dict()` has exactly numpy_gpt's parameter names and shapes
(DESIGN.md). The tied head is a functional F.linear with wte's weight, so `lm_head.weight` is
absent from `state_dict()` when tied, as in numpy_gpt (nanoGPT instead aliases the Parameter
and so stores it twice). Gradients come from autograd: nothing here reuses numpy_gpt's math
(STYLE.md L2); only its framework-free config and checkpoint schema are shared.

Attention is either F.scaled_dot_product_attention (`attn="sdpa"`, fast) or written out
(`attn="manual"`); only the manual path can apply an injected attention-dropout mask.
GPTConfig.attention ("auto" | "full" | "tiled", numpy_gpt's choice between its full and its
tiled kernel) maps to SDPA here whatever its value: on the CPU SDPA is itself a tiled
online-softmax kernel (torch's flash-attention CPU path), so `attn="sdpa"` is the twin of
both; `attn="manual"` is the twin of numpy_gpt's full layers/attention.py.

Dropout: in train mode, random dropout draws from torch's default generator (as nanoGPT;
seed it in the training script). For exact comparisons pass `dropout_masks` (bool keep-masks
by the site names of numpy_gpt.nn.config.dropout_mask_shapes), which replace the random ones.

The functional pieces the modules call (Dropout, make_norm, rope_tables, apply_rope,
causal_attention) live in layers.py and are imported here, so `torch_gpt.model.apply_rope`
is still the name CausalSelfAttention.qkv looks up.

Deliberately omits: KV-cache generation (generate.py), the optimizer (optim.py).
Ref: nanoGPT model.py; HF transformers GPT2LMHeadModel and LlamaForCausalLM; Radford et al.
2019 (GPT-2); Su et al. 2021 (RoPE); Shazeer 2020 (SwiGLU); Ainslie et al. 2023 (GQA);
llama2.c model.py (interleaved RoPE).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from numpy_gpt.nn import checkpoint
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.device import to_numpy
from numpy_gpt.nn.init_spec import init_rules

from .layers import (  # importable from here too: they lived here before
    Dropout,
    Rope,
    apply_rope,
    causal_attention,
    make_norm,
    rope_tables,
)

IGNORE_INDEX = -100
ATTN_IMPLS = ("sdpa", "manual")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
Masks = dict[str, torch.Tensor]


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' | 'float64' | torch.float32 | torch.float64 -> torch.dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")


def _sub_masks(masks: Masks | None, prefix: str) -> Masks | None:
    """The masks under `prefix`, with the prefix stripped ('transformer.h.0.' -> 'attn...')."""
    if masks is None:
        return None
    return {k[len(prefix):]: v for k, v in masks.items() if k.startswith(prefix)}


class CausalSelfAttention(nn.Module):
    """Fused q,k,v projection (c_attn), causal multi-head attention, output projection.

    c_attn's rows are q (NH heads), then k and v (n_kv_head heads each): 3C rows without
    grouping, (NH + 2 KV) hs with it. With RoPE, q and k are turned after the split."""

    def __init__(self, config: GPTConfig, attn: str = "sdpa"):
        super().__init__()
        if attn not in ATTN_IMPLS:
            raise ValueError(f"attn must be one of {ATTN_IMPLS}, got {attn!r}")
        C, hs = config.n_embd, config.head_size
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, hs
        self.rope_layout = config.rope_layout
        self.attn = attn
        self.c_attn = nn.Linear(C, (self.n_head + 2 * self.n_kv_head) * hs, bias=config.bias)
        self.c_proj = nn.Linear(C, C, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)

    def qkv(self, x: torch.Tensor, rope: Rope = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """c_attn, split into heads, RoPE on q and k. Shapes: x (B,T,C) -> q (B,NH,T,hs),
        k, v (B,KV,T,hs); rope: the (cos, sin) rows of x's positions, or None."""
        B, T, _ = x.shape
        NH, KV, hs = self.n_head, self.n_kv_head, self.head_size
        # (B,T,(NH+2KV)hs) -> (B,T,NH*hs), 2 x (B,T,KV*hs) -> (B,NH,T,hs), 2 x (B,KV,T,hs)
        q, k, v = self.c_attn(x).split((NH * hs, KV * hs, KV * hs), dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k, v = (t.view(B, T, KV, hs).transpose(1, 2) for t in (k, v))
        if rope is not None:
            q, k = (apply_rope(t, *rope, self.rope_layout) for t in (q, k))
        return q, k, v

    def forward(self, x: torch.Tensor, masks: Masks | None = None, rope: Rope = None
                ) -> torch.Tensor:
        masks = masks or {}
        B, T, C = x.shape
        q, k, v = self.qkv(x, rope)
        y = causal_attention(q, k, v, attn=self.attn, dropout=self.attn_dropout,
                             dropout_mask=masks.get("attn_dropout"))
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-merge heads: (B,T,NH,hs) -> (B,T,C)
        return self.resid_dropout(self.c_proj(y), masks.get("resid_dropout"))


class MLP(nn.Module):
    """GPT-2: c_fc (C -> F), GELU (tanh approximation like GPT-2, or exact erf), c_proj
    (F -> C), F = 4C by default. SwiGLU (Llama): c_proj(silu(c_gate(x)) * c_fc(x)), c_gate and
    c_fc (C -> F) being HF's gate_proj and up_proj. F = config.ffn_width."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        C, hidden = config.n_embd, config.ffn_width
        self.swiglu = config.mlp == "swiglu"
        self.approximate = "tanh" if config.gelu == "tanh" else "none"
        if self.swiglu:  # created first: numpy_gpt's parameter order
            self.c_gate = nn.Linear(C, hidden, bias=config.bias)
        self.c_fc = nn.Linear(C, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, C, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The activation c_proj reads: (B,T,C) -> (B,T,F)."""
        if self.swiglu:
            return F.silu(self.c_gate(x)) * self.c_fc(x)
        return F.gelu(self.c_fc(x), approximate=self.approximate)

    def forward(self, x: torch.Tensor, masks: Masks | None = None) -> torch.Tensor:
        return self.dropout(self.c_proj(self.hidden(x)), (masks or {}).get("dropout"))


class Block(nn.Module):
    """Pre-norm transformer block: two residual branches, attention then MLP."""

    def __init__(self, config: GPTConfig, attn: str = "sdpa"):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, attn)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, masks: Masks | None = None, rope: Rope = None
                ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), _sub_masks(masks, "attn."), rope)
        x = x + self.mlp(self.ln_2(x), _sub_masks(masks, "mlp."))
        return x


class GPT(nn.Module):
    """The PyTorch twin. `GPT(config, attn=..., seed=..., device=..., dtype=...)`.

    Parameters are created on the meta device, materialised on the CPU, initialised there
    and then moved to `device`. The init is numpy_gpt's scheme (numpy_gpt.nn.init_spec): one
    np.random.Generator(seed), never the global RNG, drawn parameter by parameter in canonical
    order in float64 and then cast, so one seed gives bit-identical initial weights in both
    twins and the same model in either dtype.
    `init=False` skips initialisation (for loaders that overwrite every parameter).
    With RoPE the model also holds the cos/sin tables (rope_cos, rope_sin: non-persistent
    buffers, so never in state_dict; None with learned positions).
    """

    def __init__(
        self,
        config: GPTConfig,
        *,
        attn: str = "sdpa",
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        init: bool = True,
    ):
        super().__init__()
        self.config = config
        with torch.device("meta"):
            self.transformer = nn.ModuleDict({
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                **({"wpe": nn.Embedding(config.block_size, config.n_embd)}
                   if config.position == "learned" else {}),  # RoPE: no position table
                "drop": Dropout(config.dropout),
                "h": nn.ModuleList(Block(config, attn) for _ in range(config.n_layer)),
                "ln_f": make_norm(config),
            })
            # tied: the head is F.linear with wte's weight (see forward), no module of its own
            self.lm_head = (None if config.tie_weights
                            else nn.Linear(config.n_embd, config.vocab_size, bias=False))
        self.to(as_dtype(dtype))
        if init:
            self.to_empty(device="cpu")
            self._init_weights(np.random.default_rng(seed))
            self.to(device)
        else:
            self.to_empty(device=device)
        self._build_rope()

    def _build_rope(self) -> None:
        """The RoPE tables, built once here (in float64, then cast) on the model's device."""
        cos = sin = None
        if self.config.position == "rope":
            w = self.transformer.wte.weight
            cos, sin = (t.to(w.device, w.dtype) for t in rope_tables(self.config))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def rope(self, start: int, T: int) -> Rope:
        """The (cos, sin) rows of positions start..start+T-1, (T, hs/2) each; None without
        RoPE. A KV cache passes its length as `start`."""
        if self.rope_cos is None:
            return None
        return self.rope_cos[start:start + T], self.rope_sin[start:start + T]

    @torch.no_grad()
    def _init_weights(self, rng: np.random.Generator) -> None:
        """GPT-2 init by the shared rules (numpy_gpt.nn.init_spec: N(0, 0.02) weights and
        embeddings, residual projections c_proj N(0, 0.02/sqrt(2 n_layer)), zero biases, norm
        weights one), drawn from NumPy's generator in canonical order (the order of the draws
        is what makes the values numpy_gpt's) in float64, then cast. Ref: nanoGPT."""
        params, rules = dict(self.named_parameters()), init_rules(self.config)
        if params.keys() != rules.keys():  # every parameter drawn, none left uninitialised
            raise RuntimeError(f"torch_gpt's parameters {sorted(params.keys() ^ rules.keys())} "
                               "are not numpy_gpt's param_shapes")
        for name, rule in rules.items():
            p = params[name]
            if rule.kind == "normal":
                p.copy_(torch.from_numpy(rng.normal(0.0, rule.std, size=tuple(p.shape))))
            else:
                p.fill_(1.0 if rule.kind == "ones" else 0.0)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
        dropout_masks: Masks | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B,T) int64, targets (B,T) or None -> (logits (B,T,V), mean loss or None).

        The loss is the mean cross-entropy over targets != -100 with PyTorch's label
        smoothing. Dropout follows train()/eval(); `dropout_masks` replace the random masks.
        """
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(
                f"idx has T={T} tokens but block_size is {self.config.block_size}; "
                "crop the sequence to the last block_size tokens"
            )
        masks = dropout_masks
        x = self.transformer.wte(idx)  # (B,T,C)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(T, device=idx.device))  # + (T,C)
        x = self.transformer.drop(x, None if masks is None else masks.get("transformer.drop"))
        rope = self.rope(0, T)
        for i, block in enumerate(self.transformer.h):
            x = block(x, _sub_masks(masks, f"transformer.h.{i}."), rope)
        x = self.transformer.ln_f(x)
        head = self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head)  # (B,T,C) -> (B,T,V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1),
                ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing,
            )
        return logits, loss

    # ------------------------------------------------------------------ numpy boundary

    def numpy_params(self) -> dict[str, np.ndarray]:
        """state_dict() as NumPy arrays (copies on the CPU), canonical names and order."""
        out = {}
        for k, v in self.state_dict().items():
            v = v.detach().cpu()
            if v.dtype not in (torch.float32, torch.float64):
                v = v.float()  # NumPy has no bfloat16
            out[k] = v.numpy().copy()
        return out

    @torch.no_grad()
    def load_numpy_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy NumPy (or numpy_gpt's CuPy) arrays into the parameters by name, converted to
        this model's dtype.

        The key sets and every shape must match exactly; the arrays are copied, never shared.
        """
        own = self.state_dict()
        missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
        if missing or extra:
            raise KeyError(f"parameter names differ: missing {missing}, unexpected {extra}")
        for k, t in own.items():
            if tuple(params[k].shape) != tuple(t.shape):
                raise ValueError(f"{k}: shape {tuple(params[k].shape)} != {tuple(t.shape)}")
            t.copy_(torch.from_numpy(np.array(to_numpy(params[k]), copy=True)))  # never shared

    @classmethod
    def from_params(
        cls,
        config: GPTConfig,
        params: dict[str, np.ndarray],
        *,
        attn: str = "sdpa",
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
    ) -> GPT:
        """A model holding copies of NumPy `params` (dtype defaults to the arrays' dtype)."""
        if dtype is None:
            dtype = str(next(iter(params.values())).dtype)
        model = cls(config, attn=attn, device=device, dtype=dtype, init=False)
        model.load_numpy_params(params)
        return model

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, tokenizer: Any = None, **kwargs: Any) -> None:
        """Write the checkpoint folder shared with numpy_gpt (numpy_gpt.nn.checkpoint)."""
        checkpoint.save_checkpoint(path, self.config, self.numpy_params(),
                                   tokenizer=tokenizer, **kwargs)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        attn: str = "sdpa",
    ) -> GPT:
        """Load a checkpoint folder written by either twin; dtype defaults to the stored one."""
        config, params, _ = checkpoint.load_checkpoint(path)
        return cls.from_params(config, params, attn=attn, device=device, dtype=dtype)

    @classmethod
    def from_hf(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        attn: str = "sdpa",
    ) -> GPT:
        """GPT-2 or Llama weights from a Hugging Face folder (config.json +
        model.safetensors): GPT2LMHeadModel or LlamaForCausalLM (numpy_gpt.hf.importer)."""
        from numpy_gpt.hf.importer import load_hf

        config, params = load_hf(path)
        return cls.from_params(config, params, attn=attn, device=device, dtype=dtype)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without wpe, as nanoGPT (and numpy_gpt)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n
