"""LoRA adapters for numpy_gpt: configuration, parameter names, init, save/load, merge.

An adapter adds, beside each targeted Linear `key` (e.g. transformer.h.0.attn.c_attn):

    key.lora_A.weight  (r, in)    Kaiming-uniform init (bound 1/sqrt(in)), as HF peft
    key.lora_B.weight  (out, r)   zeros, so the adapted model starts equal to the base

and the Linear computes x W^T + b + (alpha / r) * dropout(x) A^T B^T (layers/lora.py).
Targets are module names among c_attn, c_proj (the attention's and the MLP's), c_fc and,
for a SwiGLU MLP, c_gate: on a Llama-shaped model c_attn,c_proj,c_gate,c_fc adapts q/k/v
(fused), o and the three MLP matrices.

The adapter folder holds only the adapter: `adapter_config.json` + `adapter.safetensors`.
adapter_config.json also records what the adapter belongs to: `base_fingerprint`, the
checkpoint.params_fingerprint of the base weights it was trained on, and `chat_template`, the
prompt format of its training data (numpy_gpt.data.chat_format.TEMPLATES, null for plain text).
A checkpoint with adapters merged in lists their adapter_fingerprint under `merged_adapters`
in its config.json. check_adapter_fits refuses an adapter on any other base, or on a model
it is already merged into; adapters saved before these fields existed lack them, and the
caller says what it assumes instead.
LoRAConfig, the names and the file format are framework-free; torch_gpt uses them too.
Ref: Hu et al. 2021; HF peft (lora_A / lora_B naming, init).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..files.safe_io import staged_dir, writing
from .checkpoint import (
    TEMPLATE_KEY,
    CheckpointError,
    _load_tensors,
    checkpoint_fingerprint,
    host_tensors,
    params_fingerprint,
    read_json,
    read_meta,
)
from .config import GPTConfig, param_shapes

TARGETS = ("c_attn", "c_proj", "c_gate", "c_fc")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILE = "adapter.safetensors"
BASE_KEY = "base_fingerprint"  # adapter_config.json: params_fingerprint of the base weights
MERGED_KEY = "merged_adapters"  # config.json: adapter_fingerprint of each adapter merged in


class AdapterError(CheckpointError):
    """An adapter put on a model it does not belong to; the message says which and why."""


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8  # r, the rank of the update B A
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the LoRA path's input, train mode only
    targets: tuple[str, ...] = ("c_attn",)  # module names among TARGETS

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoRA rank must be an integer >= 1, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "targets", tuple(self.targets))
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"LoRA target {bad[0] if bad else '(none)'!r} is not a module of "
                             f"this GPT; choose among {', '.join(TARGETS)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def lora_sites(config: GPTConfig, lcfg: LoRAConfig) -> dict[str, tuple[int, int]]:
    """Adapted Linear keys -> (out, in) features, in forward order (param_shapes' order).

    A target the model does not have (c_gate without a SwiGLU MLP) is a ValueError."""
    sites = {}
    for name, shape in param_shapes(config).items():
        key = name.removesuffix(".weight")
        if ".h." in key and key.rsplit(".", 1)[-1] in lcfg.targets and len(shape) == 2:
            sites[key] = shape
    missing = [t for t in lcfg.targets if not any(k.endswith("." + t) for k in sites)]
    if missing:
        raise ValueError(f"LoRA target {missing[0]!r} is not a module of this model "
                         f"(mlp={config.mlp!r}); choose among the Linear layers it has")
    return sites


def lora_param_shapes(config: GPTConfig, lcfg: LoRAConfig) -> dict[str, tuple[int, int]]:
    shapes = {}
    for key, (out_f, in_f) in lora_sites(config, lcfg).items():
        shapes[key + ".lora_A.weight"] = (lcfg.rank, in_f)
        shapes[key + ".lora_B.weight"] = (out_f, lcfg.rank)
    return shapes


def lora_dropout_shapes(config: GPTConfig, lcfg: LoRAConfig, B: int, T: int
                        ) -> dict[str, tuple[int, ...]]:
    """Dropout sites of the LoRA paths: `key.lora_dropout` of shape (B, T, in)."""
    return {key + ".lora_dropout": (B, T, in_f)
            for key, (_, in_f) in lora_sites(config, lcfg).items()}


def init_lora_params(config: GPTConfig, lcfg: LoRAConfig, dtype: np.dtype,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for name, shape in lora_param_shapes(config, lcfg).items():
        if ".lora_A." in name:
            bound = 1.0 / math.sqrt(shape[1])  # kaiming_uniform_(a=sqrt(5)) as nn.Linear/peft
            params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
    return params


def merged_params(params: dict[str, np.ndarray], lora_params: dict[str, np.ndarray],
                  lcfg: LoRAConfig) -> dict[str, np.ndarray]:
    """Base params with every adapter folded in: W' = W + (alpha / r) B A (fresh arrays)."""
    merged = dict(params)
    for name, A in lora_params.items():
        if name.endswith(".lora_A.weight"):
            key = name[: -len(".lora_A.weight")]
            B = lora_params[key + ".lora_B.weight"]
            merged[key + ".weight"] = params[key + ".weight"] + lcfg.scale * (B @ A)
    return merged


def save_adapter(path: str | os.PathLike, lcfg: LoRAConfig, lora_params: dict[str, np.ndarray],
                 base: str | None = None, *, base_fingerprint: str | None = None,
                 template: str | None = None) -> Path:
    """Write only the adapter (atomically): adapter_config.json + adapter.safetensors.
    `base`: the base checkpoint's folder (for people); `base_fingerprint`: its weights'
    params_fingerprint (what check_adapter_fits compares); `template`: the prompt format
    trained on."""
    path = Path(path)
    meta = {"format_version": 1, "lora": {**asdict(lcfg), "targets": list(lcfg.targets)},
            "base_checkpoint": base, BASE_KEY: base_fingerprint, TEMPLATE_KEY: template}
    with staged_dir(path) as tmp:
        with writing(path / ADAPTER_CONFIG):
            (tmp / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        with writing(path / ADAPTER_FILE):
            save_file(host_tensors(lora_params), str(tmp / ADAPTER_FILE))
    return path


def load_adapter(path: str | os.PathLike
                 ) -> tuple[LoRAConfig, dict[str, np.ndarray], dict[str, Any]]:
    """(LoRA settings, tensors by name, adapter_config.json) of an adapter folder."""
    path = Path(path)
    if not (path / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"no LoRA adapter at {path}: expected {ADAPTER_CONFIG} and "
                              f"{ADAPTER_FILE}")
    meta = read_json(path / ADAPTER_CONFIG, what="adapter config")
    lcfg = LoRAConfig(**meta["lora"])
    return lcfg, _load_tensors(path / ADAPTER_FILE), meta


def adapter_fingerprint(lcfg: LoRAConfig, lora_params: dict[str, Any]) -> str:
    """sha256 (hex) of an adapter: its LoRA settings and its tensors' params_fingerprint."""
    settings = json.dumps({**asdict(lcfg), "targets": list(lcfg.targets)}, sort_keys=True)
    return hashlib.sha256(f"{settings}{params_fingerprint(lora_params)}".encode()).hexdigest()


def check_adapter_fits(adapter: str | os.PathLike, lcfg: LoRAConfig,
                       lora_params: dict[str, Any], meta: dict[str, Any],
                       ckpt: str | os.PathLike) -> bool:
    """Raise AdapterError when the adapter (load_adapter's lcfg, tensors, meta) does not belong
    on the checkpoint folder `ckpt`: it is already merged into it, or it was trained on other
    base weights. Returns False when the adapter records no base (saved before adapters
    recorded one), so that nothing could be checked, True when the base matched."""
    merged = read_meta(ckpt).get(MERGED_KEY) or []
    if adapter_fingerprint(lcfg, lora_params) in merged:
        raise AdapterError(
            f"the adapter {adapter} is already merged into {ckpt} (its config.json lists it "
            f"under {MERGED_KEY}): use {ckpt} without the adapter, or put the adapter on the "
            f"base it was trained on ({meta.get('base_checkpoint') or 'see ' + ADAPTER_CONFIG})")
    want = meta.get(BASE_KEY)
    if want is None:
        return False
    got = checkpoint_fingerprint(ckpt)
    if got != want:
        raise AdapterError(
            f"the adapter {adapter} was trained on another base than {ckpt} (weights "
            f"fingerprint {want[:12]}, {ckpt} has {got[:12]}): put it on the checkpoint it was "
            f"fine-tuned from ({meta.get('base_checkpoint') or 'see ' + ADAPTER_CONFIG})")
    return True
