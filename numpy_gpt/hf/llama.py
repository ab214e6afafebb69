"""Hugging Face LlamaForCausalLM folders <-> our Llama-shaped GPTConfig and params, no torch.

    config = hf_llama_config_to_gpt(json.load(open("hf/config.json")))
    params = hf_llama_to_canonical(tensors, config)            # HF names -> ours
    hf_json = gpt_config_to_hf_llama(config); tensors = canonical_to_hf_llama(params, config)

What maps to what (DESIGN.md "Parameter names"):

    GPTConfig                            HF config.json (LlamaConfig)
      vocab_size, n_layer, n_head          vocab_size, num_hidden_layers, num_attention_heads
      n_embd, block_size                   hidden_size, max_position_embeddings
      n_kv_head (None = n_head)            num_key_value_heads
      ffn_width (ffn_hidden)               intermediate_size
      layer_norm_eps                       rms_norm_eps
      rope_theta                           rope_theta (and rope_parameters, transformers >= 5)
      tie_weights, dropout                 tie_word_embeddings, attention_dropout
      bias                                 attention_bias and mlp_bias (both, or neither)
      rope_layout "halves"                 HF's only layout (rotate_half)
      rope_layout "interleaved"            exported as halves with each head's q and k rows
                                           permuted (2i, 2i+1) -> (i, i + hs/2), as HF's
                                           convert_llama_weights_to_hf does for Meta's
                                           checkpoints: the attention scores are the same
    params                               model.safetensors, Linear (out, in) as ours
      transformer.wte.weight               model.embed_tokens.weight
      h.{i}.ln_1 / ln_2 .weight            model.layers.{i}.input_layernorm /
                                           post_attention_layernorm .weight
      h.{i}.attn.c_attn (q; k; v rows)     self_attn.q_proj, k_proj, v_proj
      h.{i}.attn.c_proj                    self_attn.o_proj
      h.{i}.mlp.c_gate / c_fc / c_proj     mlp.gate_proj / up_proj / down_proj
      transformer.ln_f.weight, lm_head     model.norm.weight, lm_head.weight (when untied)

Refused in one line (HFImportError): another model_type, rope scaling other than none
("default"), attention biases without MLP biases (or the reverse), a sliding window, a head_dim
other than hidden_size / num_attention_heads, an activation other than SiLU.
Ref: transformers models/llama (configuration_llama.py, modeling_llama.py,
convert_llama_weights_to_hf.py's permute).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.config import ConfigError, GPTConfig, param_shapes
from .errors import HFImportError

SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers older checkpoints saved
LAYER_NAMES = {  # our name in block i -> HF's, Linear weights (out, in) in both
    "ln_1.weight": "input_layernorm.weight",
    "attn.c_proj.weight": "self_attn.o_proj.weight",
    "attn.c_proj.bias": "self_attn.o_proj.bias",
    "ln_2.weight": "post_attention_layernorm.weight",
    "mlp.c_gate.weight": "mlp.gate_proj.weight",
    "mlp.c_gate.bias": "mlp.gate_proj.bias",
    "mlp.c_fc.weight": "mlp.up_proj.weight",
    "mlp.c_fc.bias": "mlp.up_proj.bias",
    "mlp.c_proj.weight": "mlp.down_proj.weight",
    "mlp.c_proj.bias": "mlp.down_proj.bias",
}
QKV_PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # c_attn's row blocks


def is_llama(config: GPTConfig) -> bool:
    """Whether `config` is the block HF's LlamaForCausalLM computes (norm, position, MLP)."""
    return (config.norm, config.position, config.mlp) == ("rmsnorm", "rope", "swiglu")


# ---------------------------------------------------------------------- config


def hf_llama_config_to_gpt(hf: dict[str, Any], *, dropout: float = 0.0) -> GPTConfig:
    """An HF LlamaConfig dict as GPTConfig; HFImportError names what does not map."""
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        if key not in hf:
            raise HFImportError(f"HF config.json has no {key!r}")
    heads, C = hf["num_attention_heads"], hf["hidden_size"]
    kv = hf.get("num_key_value_heads") or heads
    scaling = hf.get("rope_scaling") or {}
    params = hf.get("rope_parameters") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    if rope_type not in (None, "default"):
        raise HFImportError(f"rope scaling {rope_type!r} is not supported (only plain RoPE, "
                           "rope_type 'default'); this model would compute other angles")
    if hf.get("hidden_act", "silu") != "silu":
        raise HFImportError(f"hidden_act {hf['hidden_act']!r} is not supported: SwiGLU here "
                           "gates with silu")
    attn_bias, mlp_bias = bool(hf.get("attention_bias")), bool(hf.get("mlp_bias"))
    if attn_bias != mlp_bias:
        raise HFImportError(f"attention_bias={str(attn_bias).lower()} with mlp_bias="
                           f"{str(mlp_bias).lower()} does not map: biases here are on every "
                           "Linear or none")
    if hf.get("sliding_window") not in (None, 0) or hf.get("use_sliding_window"):
        raise HFImportError(f"sliding_window={hf.get('sliding_window')} is not supported: "
                           "attention here sees the whole causal context")
    if hf.get("head_dim") not in (None, C // heads):
        raise HFImportError(f"head_dim={hf['head_dim']} is not hidden_size/num_attention_heads "
                           f"= {C // heads}, which this model assumes")
    try:
        config = GPTConfig(
            vocab_size=hf["vocab_size"],
            block_size=hf.get("max_position_embeddings", 2048),
            n_layer=hf["num_hidden_layers"], n_head=heads, n_embd=C,
            dropout=dropout, bias=attn_bias,
            tie_weights=bool(hf.get("tie_word_embeddings", False)),  # Llama's default: untied
            layer_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            norm="rmsnorm", position="rope", rope_layout="halves", mlp="swiglu",
            rope_theta=float(params.get("rope_theta", hf.get("rope_theta", 10000.0))),
            n_kv_head=None if kv == heads else kv,
        )
    except ConfigError as e:
        raise HFImportError(f"HF config does not make a valid GPTConfig: {e}") from None
    F = hf.get("intermediate_size", config.ffn_width)
    return config if F == config.ffn_width else config.replace(ffn_hidden=F)


def gpt_config_to_hf_llama(config: GPTConfig, *, eot_id: int | None = None,
                           dtype: str = "float32") -> dict[str, Any]:
    """LlamaConfig's fields for `config` (the inverse of hf_llama_config_to_gpt)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.ffn_width,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.layer_norm_eps,
        "rope_theta": config.rope_theta,  # transformers < 5 reads these two
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": config.dropout,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_weights,
        **token_and_dtype_fields(eot_id, dtype),
    }


def token_and_dtype_fields(eot_id: int | None, dtype: str) -> dict[str, Any]:
    """config.json's special-token ids and dtype, the same for every architecture."""
    return {"bos_token_id": eot_id, "eos_token_id": eot_id, "pad_token_id": None,
            "use_cache": True,
            "dtype": dtype,  # transformers >= 5 reads "dtype", older versions "torch_dtype"
            "torch_dtype": dtype}


# ---------------------------------------------------------------------- tensors


def interleaved_to_halves(n_heads: int, hs: int) -> np.ndarray:
    """Row order that turns a projection's interleaved RoPE pairs into halves pairs, per head:
    new row j < hs/2 is old row 2j, new row hs/2 + j is old row 2j + 1. q and k permuted
    alike leave every q.k, hence the attention, unchanged (HF's convert script's permute)."""
    within = np.concatenate([np.arange(0, hs, 2), np.arange(1, hs, 2)])
    return (np.arange(n_heads)[:, None] * hs + within).reshape(-1)


def canonical_to_hf_llama(params: dict[str, np.ndarray], config: GPTConfig
                          ) -> dict[str, np.ndarray]:
    """HF Llama tensors from our params: renamed, c_attn split into q/k/v_proj, q and k rows
    permuted when our layout is interleaved (the inverse of hf_llama_to_canonical)."""
    NH, KV, hs = config.n_head, config.kv_heads, config.head_size
    sizes = np.cumsum([NH * hs, KV * hs])
    out = {"model.embed_tokens.weight": params["transformer.wte.weight"]}
    for i in range(config.n_layer):
        ours, hf = f"transformer.h.{i}.", f"model.layers.{i}."
        for leaf in ("weight", "bias"):
            if ours + "attn.c_attn." + leaf not in params:
                continue
            q, k, v = np.split(params[ours + "attn.c_attn." + leaf], sizes)
            if config.rope_layout == "interleaved":
                q, k = q[interleaved_to_halves(NH, hs)], k[interleaved_to_halves(KV, hs)]
            for name, value in zip(QKV_PROJ, (q, k, v)):
                out[f"{hf}{name}.{leaf}"] = value
        for name, theirs in LAYER_NAMES.items():
            if ours + name in params:
                out[hf + theirs] = params[ours + name]
    out["model.norm.weight"] = params["transformer.ln_f.weight"]
    if not config.tie_weights:
        out["lm_head.weight"] = params["lm_head.weight"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def hf_llama_to_canonical(raw: dict[str, np.ndarray], config: GPTConfig, *,
                          dtype: str = "float32") -> dict[str, np.ndarray]:
    """Our params (canonical names, halves layout) from HF Llama tensors; HFImportError when a
    tensor is missing, unexpected or of the wrong shape."""
    tensors = {k: v for k, v in raw.items() if not k.endswith(SKIPPED_SUFFIXES)}
    if config.tie_weights:
        tensors.pop("lm_head.weight", None)  # tied: the head is embed_tokens, stored once
    expected = param_shapes(config)
    params: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(hf: str) -> np.ndarray | None:
        if hf in tensors:
            used.add(hf)
            return tensors[hf]
        return None

    for name in expected:
        if name.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
            i, leaf = name.split(".")[2], name.rpartition(".")[2]
            parts = [take(f"model.layers.{i}.{p}.{leaf}") for p in QKV_PROJ]
            value = None if any(p is None for p in parts) else np.concatenate(parts, axis=0)
        else:
            value = take(_hf_name(name))
        if value is not None:
            params[name] = value
    missing = [k for k in expected if k not in params]
    extra = sorted(set(tensors) - used)
    if missing or extra:
        raise HFImportError(f"HF Llama weights do not match the config: missing {missing[:4]}, "
                           f"unexpected {extra[:4]}")
    for k, shape in expected.items():
        if tuple(params[k].shape) != shape:
            raise HFImportError(f"{k} has shape {tuple(params[k].shape)}, expected {shape}")
        params[k] = np.ascontiguousarray(params[k], dtype=dtype)
    return params


def _hf_name(name: str) -> str:
    """HF's name of one canonical tensor other than c_attn."""
    fixed = {"transformer.wte.weight": "model.embed_tokens.weight",
             "transformer.ln_f.weight": "model.norm.weight", "lm_head.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, _, i, rest = name.split(".", 3)  # transformer.h.{i}.<rest>
    return f"model.layers.{i}.{LAYER_NAMES.get(rest, rest)}"
