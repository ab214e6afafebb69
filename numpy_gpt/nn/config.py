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
# The Llama family's choices (DESIGN.md "GPTConfig"); the first of each is GPT-2's
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope")
# RoPE's pair layout: "halves" rotates (x[i], x[i + hs/2]) (Hugging Face / GPT-NeoX rotate_half),
# "interleaved" rotates (x[2i], x[2i+1]) (Meta's original and llama2.c's complex pairs). The two
# are different models with the same weights (a permutation of each head's q and k rows apart).
ROPE_LAYOUTS = ("halves", "interleaved")
MLP_KINDS = ("gelu", "swiglu")
# SwiGLU's default hidden width, Meta's and llama2.c's rule: int(2/3 * 4C) rounded up to a
# multiple of SWIGLU_MULTIPLE_OF (llama2.c's default 32: C=288 -> 768, C=128 -> 352). Three
# matrices of 8/3 C keep the parameter count of GELU's two of 4C.
SWIGLU_MULTIPLE_OF = 32
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
    # The Llama family (DESIGN.md; ARCHITECTURES below names the usual combinations). The
    # defaults are GPT-2's, so a checkpoint written before these fields loads unchanged.
    norm: str = "layernorm"  # "rmsnorm": weight only, no bias, no mean (eps = layer_norm_eps)
    position: str = "learned"  # "rope": rotary embeddings on q and k, no wpe table
    rope_theta: float = 10000.0  # RoPE's base: pair i turns by pos * theta^(-2i/hs)
    rope_layout: str = "halves"  # RoPE's pairs: "halves" (Hugging Face) | "interleaved" (Meta)
    mlp: str = "gelu"  # "swiglu": c_proj(silu(c_gate(x)) * c_fc(x))
    ffn_hidden: int | None = None  # MLP hidden width F; None: 4C (gelu), Meta's 8/3 C (swiglu)
    n_kv_head: int | None = None  # key/value heads (grouped-query); None: n_head; 1: multi-query

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
        self._check_llama_fields()

    def _check_llama_fields(self) -> None:
        """The Llama family's fields (norm ... n_kv_head), each error naming field and fix."""
        for name, kinds in (("norm", NORM_KINDS), ("position", POSITION_KINDS),
                            ("rope_layout", ROPE_LAYOUTS), ("mlp", MLP_KINDS)):
            if getattr(self, name) not in kinds:
                raise ConfigError(f"GPTConfig.{name} must be one of {kinds}, "
                                  f"got {getattr(self, name)!r}")
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
            raise ConfigError(f"GPTConfig.rope_theta must be a number > 0 (Llama: 10000), "
                              f"got {theta!r}")
        for name in ("ffn_hidden", "n_kv_head"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"GPTConfig.{name} must be an integer >= 1 or None (the "
                                  f"default), got {value!r}")
        if self.n_head % self.kv_heads != 0:
            raise ConfigError(
                f"GPTConfig.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): "
                "each key/value head serves a whole group of query heads; pick a divisor "
                f"of {self.n_head}"
            )
        if self.position == "rope" and self.head_size % 2 != 0:
            raise ConfigError(
                f"GPTConfig.position='rope' needs an even head size, got n_embd/n_head = "
                f"{self.n_embd}/{self.n_head} = {self.head_size} (RoPE turns pairs of "
                "coordinates); change n_embd or n_head"
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

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_width(self) -> int:
        """The MLP's hidden width F: ffn_hidden when given; else 4C for GELU, and for SwiGLU
        int(2/3 * 4C) rounded up to a multiple of SWIGLU_MULTIPLE_OF (Meta's, llama2.c's)."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        m = SWIGLU_MULTIPLE_OF
        return -(-int(2 * 4 * self.n_embd / 3) // m) * m

    @property
    def arch(self) -> str:
        """"gpt2" or "llama" when the block's structure (norm, position, mlp) is that
        name's, whatever the biases, head tying or grouping; else "custom"."""
        for name in ARCHITECTURES:
            fields = arch_fields(name, self.n_head)
            if all(getattr(self, k) == fields[k] for k in ("norm", "position", "mlp")):
                return name
        return "custom"

    def describe_arch(self) -> str:
        """The architecture in one line, for the shape header of every command, e.g.
        'llama (rmsnorm, rope halves theta 10000, swiglu F=352, 4 q / 2 kv heads, no bias,
        untied head)'."""
        position = "learned positions" if self.position == "learned" else (
            f"rope {self.rope_layout} theta {self.rope_theta:g}")
        mlp = f"{'gelu ' + self.gelu if self.mlp == 'gelu' else 'swiglu'} F={self.ffn_width}"
        heads = (f"{self.n_head} heads" if self.kv_heads == self.n_head
                 else f"{self.n_head} q / {self.kv_heads} kv heads")
        parts = [self.norm, position, mlp, heads, "bias" if self.bias else "no bias",
                 "tied head" if self.tie_weights else "untied head"]
        return f"{self.arch} ({', '.join(parts)})"

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


# --arch NAME: the usual combination of the architecture fields (every flag still overrides).
ARCHITECTURES = ("gpt2", "llama")


def arch_fields(arch: str, n_head: int) -> dict[str, Any]:
    """The GPTConfig fields that `--arch NAME` sets, for a model of n_head heads.

    gpt2: LayerNorm, learned positions, GELU MLP of 4C, biases, head tied to wte.
    llama: RMSNorm (eps 1e-5, Llama 2's), RoPE (theta 10000, halves as Hugging Face),
    SwiGLU of Meta's 8/3 C, no biases, an untied head, and grouped-query attention with
    n_head/2 key/value heads when n_head is even (else one per query head), so the default
    Llama run exercises the grouping; --n-kv-head picks any divisor of n_head.
    """
    if arch == "gpt2":
        return {"norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": True,
                "tie_weights": True, "n_kv_head": None, "ffn_hidden": None}
    if arch == "llama":
        return {"norm": "rmsnorm", "position": "rope", "rope_theta": 10000.0,
                "rope_layout": "halves", "mlp": "swiglu", "bias": False, "tie_weights": False,
                "layer_norm_eps": 1e-5, "ffn_hidden": None,
                "n_kv_head": n_head // 2 if n_head % 2 == 0 else n_head}
    raise ConfigError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")


def unknown_fields(cls: type, keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the keys that name no field of dataclass `cls`, its field names), both sorted: what a
    strict from_dict or settings check reports before building `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return sorted(set(keys) - names), sorted(names)


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The canonical parameter names and shapes (DESIGN.md), in a fixed order.

    Both twins build exactly these keys; checkpoints store exactly these tensors.
    """
    C, V, F = config.n_embd, config.vocab_size, config.ffn_width
    QKV = (config.n_head + 2 * config.kv_heads) * config.head_size  # = 3C without grouping
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (V, C)}
    if config.position == "learned":  # RoPE has no table: positions turn q and k instead
        shapes["transformer.wpe.weight"] = (config.block_size, C)

    def linear(name: str, n_out: int, n_in: int) -> None:
        shapes[name + ".weight"] = (n_out, n_in)
        if config.bias:
            shapes[name + ".bias"] = (n_out,)

    def norm(name: str) -> None:  # RMSNorm has a weight only, whatever config.bias says
        shapes[name + ".weight"] = (C,)
        if config.bias and config.norm == "layernorm":
            shapes[name + ".bias"] = (C,)

    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        norm(p + "ln_1")
        linear(p + "attn.c_attn", QKV, C)
        linear(p + "attn.c_proj", C, C)
        norm(p + "ln_2")
        if config.mlp == "swiglu":
            linear(p + "mlp.c_gate", F, C)
        linear(p + "mlp.c_fc", F, C)
        linear(p + "mlp.c_proj", C, F)
    norm("transformer.ln_f")
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
