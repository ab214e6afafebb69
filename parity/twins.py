"""Which model is under test: `--twin FILE.py:NAME | package.module:NAME | hf | torch | numpy`.

    factory, label = resolve_twin("my_gpt.py:make_model")
    model = build_twin(factory, config)          # the user's nn.Module for this GPTConfig

NAME is a factory the user writes: it takes the suite's GPTConfig and returns their model
(an nn.Module; parity/external.py does the rest). The built-in twins are entries of the same
table: "torch" (torch_gpt.GPT), "numpy" (numpy_gpt wrapped as an nn.Module whose backward is
the hand-written one, so float32 numpy_gpt can be held against the float64 reference) and
"hf" (transformers' GPT2LMHeadModel, or LlamaForCausalLM for a Llama-shaped config (made exact
in float64 by parity/hf_llama.py); optional: TwinUnavailable says why when it is absent).
A factory may set `parity_notes` (a list of lines) on its model; the report prints them.

Every failure here is a TwinError with a one-line message; the CLI prints it and exits 2.
Deliberately omits: running a factory in a subprocess (it runs in this interpreter, so a
factory that hangs hangs the check).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig

Factory = Callable[[GPTConfig], Any]


class TwinError(ValueError):
    """A twin that cannot be loaded, placed or run; the message is one line and says why."""


class TwinUnavailable(TwinError):
    """A built-in twin whose optional dependency is missing (tests skip with this reason)."""


# ---------------------------------------------------------------------- built-in twins


def torch_twin(config: GPTConfig) -> nn.Module:
    """torch_gpt, the project's own PyTorch twin (written-out attention)."""
    import torch_gpt

    return torch_gpt.GPT(config, attn="manual", init=False)


def hf_twin(config: GPTConfig) -> nn.Module:
    """transformers' GPT2LMHeadModel with this config (eager attention, no dropout), or its
    LlamaForCausalLM when the config is Llama-shaped (RMSNorm, RoPE, SwiGLU)."""
    try:
        import transformers
    except ImportError as e:
        raise TwinUnavailable(f"--twin hf needs the optional package transformers ({e})"
                              ) from None
    if (config.norm, config.position, config.mlp) == ("rmsnorm", "rope", "swiglu"):
        from .hf_llama import hf_llama_twin

        return hf_llama_twin(config, transformers)
    if config.arch != "gpt2" or config.kv_heads != config.n_head or (
            config.ffn_width != 4 * config.n_embd):
        raise TwinError(f"--twin hf: {config.describe_arch()} is neither GPT-2's block nor "
                        "Llama's; transformers has no model for it (try --config llama-tiny)")
    hf = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, layer_norm_epsilon=config.layer_norm_eps,
        activation_function="gelu_new" if config.gelu == "tanh" else "gelu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=config.tie_weights,
        bos_token_id=None, eos_token_id=None, use_cache=False, attn_implementation="eager")
    if not config.bias:
        raise TwinError("--twin hf: GPT-2 has biases everywhere; use a config with bias true")
    model = transformers.GPT2LMHeadModel(hf)
    model.loss_type = "ForCausalLM"  # what it falls back to anyway, minus a warning
    return model


class _NumpyFunction(torch.autograd.Function):
    """numpy_gpt's forward and hand-written backward as one autograd node (loss only)."""

    @staticmethod
    def forward(ctx, module: NumpyTwin, idx: torch.Tensor, targets: torch.Tensor | None,
                *params: torch.Tensor):
        from numpy_gpt.nn.model import GPT

        model = GPT.from_params(module.config, {k: p.detach().cpu().numpy() for k, p in
                                                zip(module.names, params)},
                                dtype=str(params[0].dtype).removeprefix("torch."))
        logits, loss, cache = model.forward(idx.cpu().numpy(), None if targets is None
                                            else targets.cpu().numpy())
        ctx.grads = (model, cache, params[0].device)
        loss_t = torch.tensor(np.nan if loss is None else loss, dtype=params[0].dtype)
        return torch.from_numpy(logits).to(params[0].device), loss_t.to(params[0].device)

    @staticmethod
    def backward(ctx, dlogits: torch.Tensor, dloss: torch.Tensor):
        if dlogits is not None and bool(dlogits.abs().sum() > 0):
            raise RuntimeError("the numpy twin differentiates the loss only, not the logits")
        model, cache, device = ctx.grads
        grads = model.backward(cache, float(dloss))
        return (None, None, None, *(torch.from_numpy(grads[k]).to(device) for k in model.params))


class NumpyTwin(nn.Module):
    """numpy_gpt as an nn.Module: parameters under the canonical names, forward and backward
    run numpy_gpt (in the parameters' dtype). No submodule is ever called, so a check of
    this twin compares outputs and gradients but captures no intermediate activations."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        from numpy_gpt.nn.config import param_shapes

        self.config, self.names = config, list(param_shapes(config))
        for name, shape in param_shapes(config).items():
            owner = self
            *path, leaf = name.split(".")
            for part in path:  # an empty module per dotted level: canonical state_dict keys
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        params = [self.get_parameter(k) for k in self.names]
        logits, loss = _NumpyFunction.apply(self, idx, targets, *params)
        return logits, (None if targets is None else loss)


BUILTIN_TWINS: dict[str, Factory] = {"torch": torch_twin, "numpy": NumpyTwin, "hf": hf_twin}


# ---------------------------------------------------------------------- outside twins


def resolve_twin(spec: str) -> tuple[Factory, str]:
    """'hf' | 'torch' | 'numpy' | 'FILE.py:NAME' | 'package.module:NAME' -> (factory, label);
    the label (rows' case "twin/<label>") names a file by its base name."""
    if spec in BUILTIN_TWINS:
        return BUILTIN_TWINS[spec], spec
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise TwinError(f"--twin {spec!r}: expected FILE.py:NAME, package.module:NAME or one "
                        f"of {sorted(BUILTIN_TWINS)}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise TwinError(f"--twin {spec!r}: file {where} does not exist")
        module_name = f"parity_twin_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses and typing look it up by name
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # its sibling imports, also those the factory makes later
            sys.path.insert(0, folder)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 -- any error in user code becomes one line
            raise TwinError(f"--twin {spec!r}: importing {where} failed: "
                            f"{type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # noqa: BLE001
            raise TwinError(f"--twin {spec!r}: cannot import module {where}: "
                            f"{type(e).__name__}: {e}") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise TwinError(f"--twin {spec!r}: {where} has no {name!r}")
    if not callable(factory):
        raise TwinError(f"--twin {spec!r}: {name!r} is not callable (a factory taking a "
                        "GPTConfig)")
    return factory, f"{Path(where).name}:{name}" if where.endswith(".py") else spec


def build_twin(factory: Factory, config: GPTConfig, label: str) -> nn.Module:
    """Call the factory; its model must be an nn.Module (in eval mode from here on)."""
    try:
        model = factory(config)
    except TwinError:
        raise
    except Exception as e:  # noqa: BLE001
        raise TwinError(f"--twin {label}: the factory raised {type(e).__name__}: {e}"
                        ) from None
    if not isinstance(model, nn.Module):
        raise TwinError(f"--twin {label}: the factory returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    return model.eval()
