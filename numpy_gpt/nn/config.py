"""GPTConfig: the model's hyperparameters, shared by both twins.

A frozen dataclass validated on construction, so an impossible model fails at once with one
clear error naming the field, instead of deep inside a reshape. Framework-free: torch_gpt
imports it as is (STYLE.md L2: config and schema may be shared, math may not).

Ref: nanoGPT model.py GPTConfig; GPT-2 hyperparameters (Radford et al. 2019).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GELU_KINDS = ("tanh", "exact")
ATTENTION_KINDS = ("auto", "full", "tiled")
# "auto" runs the tiled attention (numpy_gpt/nn/layers/flash_attention.py) for sequences longer
# than this, the full one (layers/attention.py) up to it; with attention_tile None the tiles
# are AUTO_TILE_SHORT rows up to T = AUTO_TILE_SHORT_MAX_T, AUTO_TILE_LONG above (measured:
# README, "Long context: tiled attention")
AUTO_TILED_ABOVE_T = 128
AUTO_TILE_SHORT, AUTO_TILE_SHORT_MAX_T, AUTO_TILE_LONG = 64, 512, 128


class ConfigError(ValueError):
    """An impossible configuration; the message names the field and the fix."""


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 65  # V: number of token ids; ids must lie in [0, V)
    block_size: int = 64  # maximum context length T; sizes the position table wpe
    n_layer: int = 4  # number of transformer blocks
    n_head: int = 4  # NH: attention heads; head size hs = n_embd // n_head
    n_embd: int = 128  # C: residual stream width
    dropout: float = 0.0  # probability of zeroing, in [0, 1); used only in train mode
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)
    tie_weights: bool = True  # lm_head shares transformer.wte.weight (GPT-2: True)
    gelu: str = "tanh"  # "tanh": GPT-2's approximation; "exact": erf GELU, as nanoGPT
    layer_norm_eps: float = 1e-5  # epsilon inside LayerNorm's square root
    # numpy_gpt's attention kernel (the same function, to rounding): "full" keeps the (T, T)
    # probabilities (layers/attention.py), "tiled" keeps O(T) (layers/flash_attention.py; no
    # attention dropout), "auto" tiles when T > AUTO_TILED_ABOVE_T and no dropout is applied.
    # torch_gpt runs F.scaled_dot_product_attention for every value. Older checkpoints
    # without these fields load with the defaults.
    attention: str = "auto"
    attention_tile: int | None = None  # rows per query/key tile; None: by T (see above)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"GPTConfig.{name} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"GPTConfig.{name} must be >= 1, got {value}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"GPTConfig.n_embd ({self.n_embd}) must be a multiple of n_head "
                f"({self.n_head}); pick n_head dividing n_embd"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"GPTConfig.dropout must be a number, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"GPTConfig.{name} must be true or false")
        if self.gelu not in GELU_KINDS:
            raise ConfigError(f"GPTConfig.gelu must be one of {GELU_KINDS}, got {self.gelu!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ConfigError(
                f"GPTConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}"
            )
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"GPTConfig.attention must be one of {ATTENTION_KINDS}, "
                              f"got {self.attention!r}")
        if self.attention_tile is not None and (
                isinstance(self.attention_tile, bool) or not isinstance(self.attention_tile, int)
                or self.attention_tile < 1):
            raise ConfigError(f"GPTConfig.attention_tile must be an integer >= 1 or None "
                              f"(by T), got {self.attention_tile!r}")
        if self.attention == "tiled" and self.dropout > 0:
            raise ConfigError(
                f"GPTConfig.attention='tiled' cannot apply dropout ({self.dropout}): the tiled "
                "kernel keeps no (T, T) attention-dropout mask; use attention='auto' (full "
                "attention while dropout is on) or dropout=0"
            )

    def tiled_attention(self, T: int, p: float = 0.0) -> bool:
        """Whether numpy_gpt runs the tiled kernel for a length-T forward with dropout p."""
        if self.attention == "auto":
            return T > AUTO_TILED_ABOVE_T and p == 0.0
        return self.attention == "tiled"

    def attention_tile_for(self, T: int) -> int:
        """Rows per tile of the tiled kernel for a length-T forward."""
        if self.attention_tile is not None:
            return self.attention_tile
        return AUTO_TILE_SHORT if T <= AUTO_TILE_SHORT_MAX_T else AUTO_TILE_LONG

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict (e.g. config.json); unknown keys are an error, not ignored."""
        unknown, valid = unknown_fields(cls, d)
        if unknown:
            raise ConfigError(f"unknown GPTConfig field(s) {unknown}; valid fields are {valid}")
        return cls(**d)

    def replace(self, **changes: Any) -> GPTConfig:
        return dataclasses.replace(self, **changes)


def unknown_fields(cls: type, keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the keys that name no field of dataclass `cls`, its field names), both sorted: what a
    strict from_dict or settings check reports before building `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return sorted(set(keys) - names), sorted(names)


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The canonical parameter names and shapes (DESIGN.md), in a fixed order.

    Both twins build exactly these keys; checkpoints store exactly these tensors.
    """
    C, V = config.n_embd, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (V, C),
        "transformer.wpe.weight": (config.block_size, C),
    }
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        shapes[p + "ln_1.weight"] = (C,)
        if config.bias:
            shapes[p + "ln_1.bias"] = (C,)
        shapes[p + "attn.c_attn.weight"] = (3 * C, C)
        if config.bias:
            shapes[p + "attn.c_attn.bias"] = (3 * C,)
        shapes[p + "attn.c_proj.weight"] = (C, C)
        if config.bias:
            shapes[p + "attn.c_proj.bias"] = (C,)
        shapes[p + "ln_2.weight"] = (C,)
        if config.bias:
            shapes[p + "ln_2.bias"] = (C,)
        shapes[p + "mlp.c_fc.weight"] = (4 * C, C)
        if config.bias:
            shapes[p + "mlp.c_fc.bias"] = (4 * C,)
        shapes[p + "mlp.c_proj.weight"] = (C, 4 * C)
        if config.bias:
            shapes[p + "mlp.c_proj.bias"] = (C,)
    shapes["transformer.ln_f.weight"] = (C,)
    if config.bias:
        shapes["transformer.ln_f.bias"] = (C,)
    if not config.tie_weights:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def dropout_mask_shapes(config: GPTConfig, B: int, T: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every dropout site, in forward order (nanoGPT's placement).

    A mask is a boolean array, True = keep; kept values are scaled by 1/(1-p).
    Both twins accept a dict of these masks so that train mode can be compared exactly.
    """
    C, NH = config.n_embd, config.n_head
    shapes = {"transformer.drop": (B, T, C)}
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        shapes[p + "attn.attn_dropout"] = (B, NH, T, T)
        shapes[p + "attn.resid_dropout"] = (B, T, C)
        shapes[p + "mlp.dropout"] = (B, T, C)
    return shapes
