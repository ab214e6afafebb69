"""transformers' LlamaForCausalLM as a twin, and the two float32 islands it has in float64.

    model = hf_llama_twin(config)          # random init, untied or tied, GQA, SDPA attention
    exact_float64(model)                   # also for a from_pretrained model: see below

HF's Llama is written for bf16/fp16 models, and two of its pieces compute in float32 whatever
the model's dtype (transformers 5.x modeling_llama.py):
    LlamaRMSNorm.forward       hidden_states.to(torch.float32), normalised, cast back
    LlamaRotaryEmbedding       inv_freq built in float32, angles position_ids.float() * inv_freq
(and the eager attention takes its softmax in float32; SDPA, used here, does not). A float64
model therefore agrees with the float64 reference only to float32 rounding (~1e-7 on the
logits), not to DESIGN.md's 1e-12. exact_float64 swaps these two forwards, on this one model
object, for the same formulas computed in the input's dtype: RMSNorm x * rsqrt(mean(x^2) +
eps) * w, and the angles position * theta^(-2i/hs) in float64. Nothing else of HF's code
changes; the twin's notes say that it was done, and tests hold the stock model to float32
tolerance as well.

HF Llama pairs RoPE's coordinates as halves (rotate_half) only: a config with rope_layout
"interleaved" builds the same model, and the report then names the layout as the mismatch.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig

EXACT_NOTE = ("transformers' LlamaRMSNorm and LlamaRotaryEmbedding compute in float32 "
              "whatever the dtype; swapped here for the same formulas in the model's dtype "
              "(parity/hf_llama.py; unswapped, float64 agrees to ~1e-7 only)")


def hf_llama_twin(config: GPTConfig, transformers: Any) -> nn.Module:
    """LlamaForCausalLM for a Llama-shaped `config` (SDPA attention, no dropout), made exact
    in float64 (exact_float64). `transformers` is the imported module."""
    hf = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd,
        intermediate_size=config.ffn_width, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads,
        head_dim=config.head_size, max_position_embeddings=config.block_size,
        rms_norm_eps=config.layer_norm_eps, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=config.bias, mlp_bias=config.bias, attention_dropout=0.0,
        tie_word_embeddings=config.tie_weights, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, use_cache=False, attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(hf)
    model.loss_type = "ForCausalLM"
    exact_float64(model)
    model.parity_notes = [EXACT_NOTE]
    return model


def exact_float64(model: nn.Module) -> nn.Module:
    """Swap the forwards of every *RMSNorm and *RotaryEmbedding module of an HF Llama-style
    model for dtype-preserving ones (module docstring). Returns the model."""
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm"):
            module.forward = types.MethodType(_rmsnorm_forward, module)
        elif name.endswith("RotaryEmbedding"):
            hf_config = module.config
            theta = (getattr(hf_config, "rope_parameters", None) or {}).get(
                "rope_theta", getattr(hf_config, "rope_theta", 10000.0))
            dim = getattr(hf_config, "head_dim", None) or (
                hf_config.hidden_size // hf_config.num_attention_heads)
            module.exact_inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64)
                                              / dim)
            module.forward = types.MethodType(_rotary_forward, module)
    return model


def _rmsnorm_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm's formula in x's dtype: w * x / sqrt(mean(x^2) + eps)."""
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                          + self.variance_epsilon))


def _rotary_forward(self: nn.Module, x: torch.Tensor, position_ids: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """LlamaRotaryEmbedding's (cos, sin) (B, T, hs), angles in float64, then x's dtype."""
    inv_freq = self.exact_inv_freq.to(x.device)
    freqs = position_ids[..., None].to(torch.float64) * inv_freq  # (B, T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # halves: pair i is (i, i + hs/2)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)
