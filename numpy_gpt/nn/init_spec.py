"""How a model's initial weights are drawn from a seed: one scheme for both twins.

    rules = init_rules(config)                 # canonical name -> InitRule, in canonical order
    rng = np.random.default_rng(seed)          # NumPy's PCG64, in both twins
    for name, shape in param_shapes(config).items():
        rule = rules[name]                     # "normal": rng.normal(0.0, rule.std, shape) in
                                               # float64; "ones" / "zeros": no draw
        ... cast to the run's dtype

The scheme: one np.random.Generator seeded with the model seed, parameters visited in the
canonical order of config.param_shapes, each normal draw made in float64 and then cast (so
float32 and float64 models from one seed are the same model to rounding). numpy_gpt
(model_parts.init_params) and torch_gpt (model.GPT._init_weights) each make the draws themselves
from this table; only the table is shared, which is bookkeeping like param_shapes (STYLE.md
L2), so one seed and one config give bit-identical initial model.safetensors in both twins.

The rules are GPT-2's, chosen by the parameter's name, so any parameter in param_shapes has
one (the Llama-shaped ones included): N(0, 0.02) for embeddings and Linear weights, the
residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2 n_layer)), zero biases, and
norm weights (LayerNorm or RMSNorm) one. A name no rule covers is an error here, not a silent
default, so a new kind of parameter gets its init on purpose.

Deliberately omits: LoRA adapters (nn/lora.py draws those, torch_gpt/lora.py the same way)
and dropout masks (each twin's own generator; model_parts.make_dropout_masks shares them where a
comparison needs it).
Ref: GPT-2 paper §2.3; nanoGPT GPT._init_weights; llama2.c model.py (the same rule for w1-w3).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .config import GPTConfig, param_shapes

BASE_STD = 0.02
# the last module name of a parameter -> how it starts
NORMS = ("ln_1", "ln_2", "ln_f")  # LayerNorm or RMSNorm weights: one
RESIDUAL_PROJECTIONS = ("c_proj",)  # attn.c_proj, mlp.c_proj: the scaled std
WEIGHTS = ("wte", "wpe", "c_attn", "c_fc", "c_gate", "lm_head")  # N(0, BASE_STD)


class InitRule(NamedTuple):
    kind: str  # "normal" | "ones" | "zeros"
    std: float = 0.0  # for "normal"


def init_rules(config: GPTConfig) -> dict[str, InitRule]:
    """Every canonical parameter's rule, in param_shapes' order (the order of the draws)."""
    resid_std = BASE_STD / math.sqrt(2 * config.n_layer)
    rules = {}
    for name in param_shapes(config):
        module, _, kind = name.rpartition(".")
        last = module.rpartition(".")[2]
        if kind == "bias":
            rules[name] = InitRule("zeros")
        elif last in NORMS:
            rules[name] = InitRule("ones")
        elif last in RESIDUAL_PROJECTIONS:
            rules[name] = InitRule("normal", resid_std)
        elif last in WEIGHTS:
            rules[name] = InitRule("normal", BASE_STD)
        else:
            raise ValueError(f"no init rule for parameter {name!r}; add its module name to "
                             "numpy_gpt/nn/init_spec.py")
    return rules
