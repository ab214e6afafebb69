"""Layers of the GPT as forward/backward pairs (STYLE.md §3).

Every layer is two functions:

    out, cache = <layer>_forward(x, *params)
    dx, *dparams = <layer>_backward(dout, cache)

Gradients come back in forward-argument order as fresh arrays. A cache is a NamedTuple of
references to forward values (never copies), so calling backward twice gives the same result.

Shape letters, used in every docstring and comment of this package:
    B  batch size          T  sequence length (<= block_size)
    C  n_embd              NH n_head              hs head size = C // NH
    KV n_kv_head (grouped-query attention; = NH unless set)    G  NH // KV query heads per group
    F  the MLP's hidden width (GPTConfig.ffn_width)
    V  vocab_size          N  B*T rows, when a layer flattens (B, T)

Arrays may be NumPy's or CuPy's: a layer that calls a module function takes the module from
its input (xp = get_array_module(x), numpy_gpt/nn/device.py), so the same lines run on a GPU.

Ref: karpathy/llm.c train_gpt2.c (the same layers in C, one forward/backward pair each).
"""

from .attention import attention_backward, attention_forward
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .flash_attention import (
    FlashAttentionCache,
    flash_attention_backward,
    flash_attention_forward,
)
from .gelu import (
    gelu_exact_backward,
    gelu_exact_forward,
    gelu_recompute,
    gelu_tanh_backward,
    gelu_tanh_forward,
)
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .lora import lora_backward, lora_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .rmsnorm import rmsnorm_backward, rmsnorm_forward
from .rope import rope_backward, rope_forward, rope_tables
from .swiglu import swiglu_backward, swiglu_forward, swiglu_recompute

__all__ = [
    "FlashAttentionCache",
    "attention_backward",
    "attention_forward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout_backward",
    "dropout_forward",
    "embedding_backward",
    "embedding_forward",
    "flash_attention_backward",
    "flash_attention_forward",
    "gelu_exact_backward",
    "gelu_exact_forward",
    "gelu_recompute",
    "gelu_tanh_backward",
    "gelu_tanh_forward",
    "layernorm_backward",
    "layernorm_forward",
    "linear_backward",
    "linear_forward",
    "lora_backward",
    "lora_forward",
    "rmsnorm_backward",
    "rmsnorm_forward",
    "rope_backward",
    "rope_forward",
    "rope_tables",
    "swiglu_backward",
    "swiglu_forward",
    "swiglu_recompute",
]
