"""LoRA for torch_gpt: low-rank adapters beside frozen Linear layers, as nn.Modules.

    lcfg = LoRAConfig(rank=8, alpha=16, dropout=0.05, targets=("c_attn", "c_proj"))
    apply_lora(model, lcfg, seed=0)     # base frozen; state_dict gains ...c_attn.lora_A.weight
    ... train: only the lora_A / lora_B parameters have requires_grad ...
    save_adapter(model, "out/adapter")  # adapter_config.json + adapter.safetensors (numpy's files)
    merge_lora(model)                   # W += alpha/r B A; a plain GPT again

The twin of numpy_gpt/nn/layers/lora.py and numpy_gpt/nn/lora.py. Each targeted nn.Linear (chosen by
numpy_gpt.nn.lora.lora_sites, so both twins adapt the same layers) is replaced by a LoRALinear, a
subclass of nn.Linear that takes over the base Parameters unchanged (so state_dict keeps the
canonical `...c_attn.weight` / `.bias`) and adds two bias-free nn.Linear: lora_A (in -> r)
and lora_B (r -> out), i.e. `...c_attn.lora_A.weight` (r, in) and `.lora_B.weight` (out, r),
the names numpy_gpt and HF peft use. Gradients come from autograd; only LoRAConfig, the site
names and the adapter file format are shared with numpy_gpt (STYLE.md L2).

LoRA dropout acts on the LoRA path's input only, in train mode. For exact comparisons the
keep-masks of numpy_gpt.nn.model_parts.make_dropout_masks (`<linear key>.lora_dropout`,
(B,T,in)) can be passed in the model's usual `dropout_masks` argument: a forward pre-hook
installed by apply_lora hands each LoRALinear its mask for that one call, so
torch_gpt/model.py needs no change.

Deliberately omits: adapters on embeddings or the head, several adapters at once, DoRA/rsLoRA
scaling, quantized bases.
Ref: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"; HF peft
tuners/lora/layer.py (Linear: lora_A, lora_B, lora_dropout, scaling, merge).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from numpy_gpt.nn import lora as np_lora
from numpy_gpt.nn.lora import LoRAConfig

from .layers import Dropout
from .model import GPT

__all__ = ["LoRAConfig", "LoRALinear", "apply_lora", "load_adapter", "lora_numpy_params",
           "lora_parameters", "merge_lora", "save_adapter"]


class LoRALinear(nn.Linear):
    """y = x W^T + b + (alpha / r) * lora_B(lora_A(dropout(x))), with W, b frozen.

    Built from an existing nn.Linear, whose weight and bias Parameters it keeps (the same
    objects). lora_A starts Kaiming-uniform (nn.Linear's own init: bound 1/sqrt(in)), lora_B
    at zero, so the adapted layer starts equal to the base layer. The uniform draw comes from
    `rng`, NumPy's generator, as numpy_gpt.nn.lora.init_lora_params draws it: apply_lora hands
    every site the one generator in lora_sites' order, so one seed gives both twins the same A.
    """

    def __init__(self, base: nn.Linear, lcfg: LoRAConfig, rng: np.random.Generator):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base's Parameters are reused
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.scaling = lcfg.rank, lcfg.scale
        w = base.weight
        self.lora_A = nn.Linear(self.in_features, lcfg.rank, bias=False,
                                device=w.device, dtype=w.dtype)
        self.lora_B = nn.Linear(lcfg.rank, self.out_features, bias=False,
                                device=w.device, dtype=w.dtype)
        self.lora_dropout = Dropout(lcfg.dropout)
        self.dropout_mask: torch.Tensor | None = None  # set for one forward by the model's hook
        with torch.no_grad():  # drawn in float64 on the CPU, then cast, as GPT's init
            bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform_(a=sqrt(5))
            a = rng.uniform(-bound, bound, size=tuple(self.lora_A.weight.shape))
            self.lora_A.weight.copy_(torch.from_numpy(a))
            self.lora_B.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # the frozen base layer
        h = self.lora_A(self.lora_dropout(x, self.dropout_mask))  # (..., in) -> (..., r)
        return out + self.scaling * self.lora_B(h)  # (..., r) -> (..., out)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, the (out, in) update that merging adds to W."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, scaling={self.scaling}")


def _module(model: nn.Module, key: str) -> nn.Module:
    return model.get_submodule(key)


def _set_module(model: nn.Module, key: str, module: nn.Module) -> None:
    parent, _, name = key.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapted layers by their Linear key (e.g. transformer.h.0.attn.c_attn)."""
    return {k: m for k, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: GPT, lcfg: LoRAConfig, seed: int = 0) -> GPT:
    """Adapt `model` in place: freeze every base parameter and put a LoRALinear at each site
    of numpy_gpt.nn.lora.lora_sites. Returns the model (its `lora` attribute is the config)."""
    if not isinstance(lcfg, LoRAConfig):
        raise TypeError(f"lcfg must be a numpy_gpt.nn.lora.LoRAConfig, got {type(lcfg).__name__}")
    if getattr(model, "lora", None) is not None:
        raise ValueError("this model already has LoRA adapters; merge_lora() it first")
    rng = np.random.default_rng(seed)  # numpy_gpt's add_lora draws from the same stream
    for p in model.parameters():
        p.requires_grad_(False)
    for key in np_lora.lora_sites(model.config, lcfg):  # forward order, as numpy_gpt draws A
        base = _module(model, key)
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{key} is not an nn.Linear; cannot adapt it")
        _set_module(model, key, LoRALinear(base, lcfg, rng))
    model.lora = lcfg
    model._lora_hooks = (  # route `<key>.lora_dropout` masks of forward(dropout_masks=...)
        model.register_forward_pre_hook(_hand_out_masks, with_kwargs=True),
        model.register_forward_hook(_take_back_masks, always_call=True),
    )
    return model


def _hand_out_masks(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    masks = kwargs.get("dropout_masks") or {}
    for key, m in lora_modules(model).items():
        m.dropout_mask = masks.get(key + ".lora_dropout")


def _take_back_masks(model: nn.Module, args: tuple, output: Any) -> None:
    for m in lora_modules(model).values():
        m.dropout_mask = None


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable adapter Parameters by canonical name (`<key>.lora_A.weight`, ...)."""
    return {k: p for k, p in model.named_parameters() if ".lora_A." in k or ".lora_B." in k}


def lora_numpy_params(model: nn.Module) -> dict[str, np.ndarray]:
    """The adapter tensors as NumPy arrays (CPU copies), e.g. for numpy_gpt's save_adapter."""
    return {k: p.detach().cpu().numpy().copy() for k, p in lora_parameters(model).items()}


@torch.no_grad()
def load_lora_params(model: nn.Module, tensors: dict[str, np.ndarray]) -> None:
    """Copy adapter arrays into an adapted model; names and shapes must match exactly."""
    own = lora_parameters(model)
    if set(own) != set(tensors) or any(tuple(tensors[k].shape) != tuple(p.shape)
                                       for k, p in own.items()):
        raise ValueError("the adapter's tensors do not match this model and LoRA config")
    for k, p in own.items():
        p.copy_(torch.from_numpy(np.array(tensors[k], copy=True)))


@torch.no_grad()
def merge_lora(model: GPT) -> GPT:
    """Fold every adapter into its base weight (W += alpha/r B A), put plain nn.Linear layers
    back and unfreeze the parameters: a plain GPT again (its state_dict has only the canonical
    names). A model without adapters is returned unchanged."""
    if getattr(model, "lora", None) is None:
        return model
    for key, m in lora_modules(model).items():
        m.weight += m.delta_weight().to(m.weight.dtype)
        plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                          device="meta")
        plain.weight, plain.bias = m.weight, m.bias
        _set_module(model, key, plain)
    for hook in model._lora_hooks:
        hook.remove()
    model.lora, model._lora_hooks = None, ()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save_adapter(model: GPT, path: str | os.PathLike, base: str | None = None,
                 **recorded: Any) -> Path:
    """Write only the adapter, in numpy_gpt's format (either twin loads it); `recorded`:
    numpy_gpt.nn.lora.save_adapter's base_fingerprint and template."""
    if getattr(model, "lora", None) is None:
        raise ValueError("this model has no LoRA adapters to save")
    return np_lora.save_adapter(path, model.lora, lora_numpy_params(model), base=base,
                                **recorded)


def load_adapter(model: GPT, path: str | os.PathLike) -> LoRAConfig:
    """Attach the adapter saved at `path` (by either twin) to a plain model; returns its config."""
    lcfg, tensors, _ = np_lora.load_adapter(path)
    apply_lora(model, lcfg)
    load_lora_params(model, tensors)
    return lcfg
