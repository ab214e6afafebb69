"""Import GPT-2 or Llama weights saved in Hugging Face layout, framework-free: (GPTConfig, params).

    config, params = load_hf("path/to/folder")        # GPT2LMHeadModel or LlamaForCausalLM
    config, params = load_hf_gpt2("path/to/gpt2")     # a GPT-2 folder only
    model = numpy_gpt.GPT.from_params(config, params)  # or torch_gpt.GPT.from_hf(path)

load_hf reads config.json's model_type: "gpt2" (or none, as old GPT-2 folders) is read here,
"llama" by numpy_gpt/hf/llama.py (its docstring says what maps to what); any other is refused
in one line naming it.

The folder holds HF's config.json (n_layer, n_head, n_embd, n_positions, vocab_size,
layer_norm_epsilon, activation_function, tie_word_embeddings) and the weights, read from the
first of: model.safetensors; model.safetensors.index.json (shards); pytorch_model.bin (via
torch.load(weights_only=True); torch is imported only in that branch).

HF's GPT-2 uses Conv1D, whose weight is (in, out): the four projection weights (attn.c_attn,
attn.c_proj, mlp.c_fc, mlp.c_proj) are transposed to our Linear (out, in), as nanoGPT's
from_pretrained does. Keys may or may not carry the "transformer." prefix; the attention
buffers attn.bias / attn.masked_bias are skipped; a tied lm_head.weight is dropped.

Deliberately omits: GPT-2 variants this model cannot express (scale_attn_by_inverse_layer_idx,
reorder_and_upcast_attn, n_inner != 4 n_embd) -- they raise HFImportError instead of loading
into a silently different model.
Ref: nanoGPT model.py GPT.from_pretrained; transformers models/gpt2/modeling_gpt2.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.config import ConfigError, GPTConfig, param_shapes
from .errors import HFImportError
from .llama import hf_llama_config_to_gpt, hf_llama_to_canonical

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")
SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not parameters
GELU_BY_ACTIVATION = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh",
                      "gelu": "exact"}


def hf_config_to_gpt(hf: dict[str, Any], *, dropout: float = 0.0) -> GPTConfig:
    """Map an HF GPT2Config dict to GPTConfig (dropout is ours to choose: 0 for inference)."""
    def get(*names: str, default: Any = None) -> Any:
        for name in names:
            if name in hf:
                return hf[name]
        if default is None:
            raise HFImportError(f"HF config.json has no {names[0]!r}")
        return default

    activation = hf.get("activation_function", "gelu_new")
    if activation not in GELU_BY_ACTIVATION:
        raise HFImportError(f"unsupported activation_function {activation!r}; "
                            f"supported: {sorted(GELU_BY_ACTIVATION)}")
    n_embd = get("n_embd", "hidden_size")
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise HFImportError(f"n_inner={hf['n_inner']} but this model's MLP is 4 * n_embd")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise HFImportError(f"{flag}=true is not supported")
    if hf.get("scale_attn_weights", True) is False:
        raise HFImportError("scale_attn_weights=false is not supported")
    try:
        return GPTConfig(
            vocab_size=get("vocab_size"),
            block_size=get("n_positions", "n_ctx"),
            n_layer=get("n_layer", "num_hidden_layers"),
            n_head=get("n_head", "num_attention_heads"),
            n_embd=n_embd,
            dropout=dropout,
            bias=True,  # GPT-2 has biases everywhere
            tie_weights=bool(hf.get("tie_word_embeddings", True)),
            gelu=GELU_BY_ACTIVATION[activation],
            layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        )
    except ConfigError as e:
        raise HFImportError(f"HF config does not make a valid GPTConfig: {e}") from None


SUPPORTED_TYPES = ("gpt2", "llama")


def load_hf(
    path: str | os.PathLike, *, dtype: str = "float32", dropout: float = 0.0
) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(GPTConfig, params by canonical name, cast to dtype) from an HF GPT-2 or Llama folder."""
    path = Path(path)
    hf = read_hf_config(path)
    if hf_model_type(hf, path) == "llama":
        config = hf_llama_config_to_gpt(hf, dropout=dropout)
        return config, hf_llama_to_canonical(read_hf_tensors(path), config, dtype=dtype)
    config = hf_config_to_gpt(hf, dropout=dropout)
    return config, hf_to_canonical(read_hf_tensors(path), config, dtype=dtype)


def load_hf_gpt2(
    path: str | os.PathLike, *, dtype: str = "float32", dropout: float = 0.0
) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(GPTConfig, params by canonical name, cast to dtype) from an HF GPT-2 folder."""
    path = Path(path)
    hf = read_hf_config(path)
    if hf_model_type(hf, path) != "gpt2":
        raise HFImportError(f"{path} holds a {hf['model_type']} model, not GPT-2: use "
                            "numpy_gpt.hf.importer.load_hf")
    config = hf_config_to_gpt(hf, dropout=dropout)
    raw = read_hf_tensors(path)
    return config, hf_to_canonical(raw, config, dtype=dtype)


def read_hf_config(path: Path) -> dict[str, Any]:
    """The folder's config.json as a dict; HFImportError when absent or not JSON."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HFImportError(f"no HF config.json in {path}")
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HFImportError(f"{config_file} is not valid JSON ({e})") from None
    if not isinstance(hf, dict):
        raise HFImportError(f"{config_file} is not a JSON object")
    return hf


def hf_model_type(hf: dict[str, Any], path: Path) -> str:
    """"gpt2" or "llama" from config.json (no model_type: GPT-2, as old folders); another
    architecture is refused, named."""
    kind = hf.get("model_type", "gpt2")
    if kind not in SUPPORTED_TYPES:
        arch = ", ".join(hf.get("architectures") or []) or "no architectures listed"
        raise HFImportError(f"{path} holds a {kind!r} model ({arch}); this project imports "
                            "GPT-2 (GPT2LMHeadModel) and Llama (LlamaForCausalLM) folders only")
    return kind


def hf_to_canonical(
    raw: dict[str, np.ndarray], config: GPTConfig, *, dtype: str = "float32"
) -> dict[str, np.ndarray]:
    """Rename (add "transformer."), transpose Conv1D weights, drop buffers; check shapes."""
    tensors = {}
    for name, value in raw.items():
        if name.endswith(SKIPPED_SUFFIXES):
            continue
        if name != "lm_head.weight" and not name.startswith("transformer."):
            name = "transformer." + name
        if name.endswith(CONV1D_WEIGHTS):
            value = value.T  # Conv1D (in, out) -> Linear (out, in)
        tensors[name] = value
    if config.tie_weights:
        tensors.pop("lm_head.weight", None)  # tied: the head is wte, stored once
    expected = param_shapes(config)
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise HFImportError(f"HF weights do not match the config: missing {missing[:4]}, "
                            f"unexpected {extra[:4]}")
    params = {}
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise HFImportError(f"{k} has shape {tuple(tensors[k].shape)}, expected {shape} "
                                "(after transposing Conv1D weights)")
        params[k] = np.ascontiguousarray(tensors[k], dtype=dtype)
    return params


def read_hf_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the folder's weight file(s) as NumPy arrays, by HF name."""
    from safetensors.numpy import load_file

    single, index, bin_file = (path / "model.safetensors", path / "model.safetensors.index.json",
                               path / "pytorch_model.bin")
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(load_file(str(path / shard)))
        return tensors
    if bin_file.is_file():
        import torch  # only for the legacy pickle-based format, and only its safe loader

        state = torch.load(bin_file, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
                for k, v in state.items()}
    raise HFImportError(f"no model.safetensors or pytorch_model.bin in {path}")
