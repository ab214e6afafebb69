"""The parts model.py's GPT is assembled from that stand outside its class.

    GPTCache, BlockCache       what GPT.forward keeps for GPT.backward (STYLE.md C2)
    init_params                the initial weights, drawn by init_spec's rules
    make_dropout_masks         bool keep-masks for every dropout site, drawn from one rng
    norm_forward               ln_1 / ln_2 / ln_f: LayerNorm or RMSNorm, as config.norm says
    check_token_ids            idx / targets validated on the host, with errors that say why

Each is a plain type or function of (config, arrays, rng), so other modules use them without a
GPT: generation's KV-cache decode calls norm_forward, gradcheck / parallel / parity share
dropout masks, bench draws parameters with init_params. model.py re-exports them all, so
`from numpy_gpt.nn.model import make_dropout_masks` (and the rest) keeps working.

Deliberately omits: the forward and backward themselves (model.py) and the layers' math
(layers/); the init rules' table (init_spec.py, shared with torch_gpt).
Ref: llm.c train_gpt2.c (ActivationTensors, gpt2_build_from_random); nanoGPT model.py
(GPT._init_weights).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .config import GPTConfig, dropout_mask_shapes, param_shapes
from .device import to_numpy
from .init_spec import init_rules
from .layers import layernorm_forward, rmsnorm_forward
from .layers.loss import IGNORE_INDEX
from .lora import LoRAConfig, lora_dropout_shapes


class BlockCache(NamedTuple):
    ln_1: Any
    c_attn: Any
    rope: Any  # None with learned positions
    attn: Any
    attn_proj: Any
    attn_drop: Any
    ln_2: Any
    c_gate: Any  # None without SwiGLU
    c_fc: Any
    act: Any  # the GELU's or the SwiGLU's cache
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
    config: GPTConfig, B: int, T: int, rng: np.random.Generator, lora: LoRAConfig | None = None
) -> dict[str, np.ndarray]:
    """Fresh bool keep-masks for every dropout site, True = keep.

    The model's sites (config.dropout_mask_shapes, probability config.dropout) when
    config.dropout > 0, then the LoRA paths' sites (probability lora.dropout) when an adapter
    with dropout is given. Drawn in that order from `rng`, so one seed gives one set of masks;
    pass the same dict to both twins to compare them in train mode.
    """
    masks = {}
    if config.dropout > 0.0:
        for name, shape in dropout_mask_shapes(config, B, T).items():
            masks[name] = rng.random(shape, dtype=np.float32) >= config.dropout
    if lora is not None and lora.dropout > 0.0:
        for name, shape in lora_dropout_shapes(config, lora, B, T).items():
            masks[name] = rng.random(shape, dtype=np.float32) >= lora.dropout
    return masks


def norm_forward(config: GPTConfig, params: dict[str, np.ndarray], x: np.ndarray, key: str
                 ) -> tuple[np.ndarray, Any]:
    """The norm `key` (ln_1, ln_2, ln_f) with weights from `params`: LayerNorm, or RMSNorm
    (weight only) for config.norm "rmsnorm". (out, cache), as the layer's forward."""
    eps = config.layer_norm_eps
    if config.norm == "rmsnorm":
        return rmsnorm_forward(x, params[key + ".weight"], eps)
    return layernorm_forward(x, params[key + ".weight"], params.get(key + ".bias"), eps)


def init_params(config: GPTConfig, dtype: np.dtype, rng: np.random.Generator
                ) -> dict[str, np.ndarray]:
    """GPT-2 initialization by init_spec's rules (N(0, 0.02) weights and embeddings, residual
    projections N(0, 0.02/sqrt(2 n_layer)), zero biases, norm weights one), drawn from `rng`
    in canonical order in float64 and then cast: the scheme torch_gpt draws by too, so one
    seed gives one model in either twin and in float32 or float64.
    Ref: GPT-2 paper §2.3; nanoGPT GPT._init_weights.
    """
    rules = init_rules(config)
    params = {}
    for name, shape in param_shapes(config).items():
        rule = rules[name]
        if rule.kind == "normal":
            value = rng.normal(0.0, rule.std, size=shape)
        else:
            value = np.ones(shape) if rule.kind == "ones" else np.zeros(shape)
        params[name] = value.astype(dtype)
    return params


def check_token_ids(config: GPTConfig, ids: Any, what: str,
                    shape: tuple[int, int] | None = None) -> np.ndarray:
    """`ids` ("idx" or "targets") as a host array of (B, T) int token ids in [0, V) (targets
    may also hold IGNORE_INDEX), T <= block_size and, when given, the shape of idx; a
    ValueError naming the first problem otherwise."""
    ids = to_numpy(ids)  # on the host: the checks below report values
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must be integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{what} must have shape (B, T), got {ids.shape}")
    if shape is not None and ids.shape != shape:
        raise ValueError(f"{what} has shape {ids.shape} but idx has shape {shape}")
    if ids.shape[1] > config.block_size:
        raise ValueError(
            f"{what} has T={ids.shape[1]} tokens but block_size is {config.block_size}; "
            "crop the sequence to the last block_size tokens"
        )
    if ids.size == 0:
        raise ValueError(f"{what} is empty (shape {ids.shape})")
    V = config.vocab_size
    is_target = what == "targets"
    bad = (ids >= V) | ((ids < 0) & ~(is_target & (ids == IGNORE_INDEX)))
    if bad.any():
        raise ValueError(
            f"{what} contains token id {int(ids[bad].flat[0])} outside [0, {V})"
            + (f"; use {IGNORE_INDEX} to ignore a target" if is_target else "")
        )
    return ids
