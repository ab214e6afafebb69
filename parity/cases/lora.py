"""LoRA cases: numpy_gpt's hand-written LoRA backward against torch_gpt's LoRALinear.

    lora/layer-*   lora_forward/lora_backward vs LoRALinear's update under autograd: the output,
                   dx (the input path), dA and dB, with and without a shared dropout mask
    lora/model-*   the adapted GPT: logits, loss and every gradient by name, the lora_A /
                   lora_B ones and, with the base unfrozen for the comparison, every base
                   parameter's (they see the LoRA paths through the input path of each layer);
                   train mode shares the model's and the LoRA paths' dropout masks
                   (numpy_gpt.nn.model_parts.make_dropout_masks with the LoRA config)
    lora/llama-*   the same on the --config size Llama-shaped, adapting q/k/v (c_attn), o and
                   the MLP's three matrices (c_proj, c_gate, c_fc)
    merged         in each twin, the merged model's logits equal the adapted model's, and
                   torch's merged weights equal numpy's

lora_B starts at zero, which would make every dA zero and hide a wrong dA: the cases draw
both A and B at random. The torch side builds LoRALinear from torch_gpt.lora; it shares only
LoRAConfig and the site names with numpy_gpt (STYLE.md L2).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import torch_gpt
from numpy_gpt.nn.layers import linear_backward, linear_forward, lora_backward, lora_forward
from numpy_gpt.nn.lora import LoRAConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from numpy_gpt.nn.model_parts import make_dropout_masks
from torch_gpt.lora import LoRALinear, apply_lora, lora_numpy_params, merge_lora

from ..harness import Context
from . import Case, llama_config, register

LORA_P = 0.25  # LoRA dropout of the train-mode cases


def _randn(rng: np.random.Generator, ctx: Context, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(ctx.ref_dtype)


# ---------------------------------------------------------------------- one layer


def run_layer(ctx: Context, dropout: bool) -> None:
    rng = ctx.rng()
    B, T, C, r, out_f = 2, 3, 8, 3, 12  # sizes that all differ
    lcfg = LoRAConfig(rank=r, alpha=6.0, dropout=LORA_P if dropout else 0.0)
    x, W, b = _randn(rng, ctx, B, T, C), _randn(rng, ctx, out_f, C), _randn(rng, ctx, out_f)
    A, Bm = _randn(rng, ctx, r, C), _randn(rng, ctx, out_f, r)
    mask = rng.random((B, T, C)) >= LORA_P if dropout else None
    base, lin_cache = linear_forward(x, W, b)
    delta, cache = lora_forward(x, A, Bm, lcfg.scale, mask, lcfg.dropout)
    out = base + delta
    dout = _randn(rng, ctx, *out.shape)
    dx_lora, dA, dB = lora_backward(dout, cache)

    linear = nn.Linear(C, out_f, device=ctx.device, dtype=ctx.torch_dtype)
    layer = LoRALinear(linear, lcfg, np.random.default_rng(0)).train(dropout)
    with torch.no_grad():
        for p, v in ((layer.weight, W), (layer.bias, b), (layer.lora_A.weight, A),
                     (layer.lora_B.weight, Bm)):
            p.copy_(ctx.tensor(v))
    layer.weight.requires_grad_(False)  # frozen, as in fine-tuning
    layer.bias.requires_grad_(False)
    layer.dropout_mask = None if mask is None else ctx.tensor(mask)
    x_t = ctx.tensor(x, requires_grad=True)
    out_t = layer(x_t)
    (out_t * ctx.tensor(dout)).sum().backward()
    tag = f"B{B}T{T}C{C}r{r}" + ("-dropout" if dropout else "")
    ctx.check(f"{tag} out", out_t, out, "forward")
    # x fans out into the frozen Linear and the LoRA path: dx is the sum of both
    ctx.check(f"{tag} dx", x_t.grad, linear_backward(dout, lin_cache)[0] + dx_lora, "grad")
    ctx.check(f"{tag} dA", layer.lora_A.weight.grad, dA, "grad")
    ctx.check(f"{tag} dB", layer.lora_B.weight.grad, dB, "grad")


# ---------------------------------------------------------------------- whole model


@dataclass(frozen=True)
class Variant:
    name: str
    targets: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")
    tie_weights: bool = True
    bias: bool = True
    dropout: float = 0.0  # > 0: train mode, the model's dropout with identical masks
    lora_dropout: float = 0.0  # > 0: train mode, the LoRA paths' dropout, identical masks
    llama: bool = False  # the context's size Llama-shaped (cases.llama_config)


VARIANTS = [
    Variant("model-all-targets"),
    Variant("model-c_attn-untied-nobias", targets=("c_attn",), tie_weights=False, bias=False),
    Variant("model-c_proj-c_fc", targets=("c_proj", "c_fc")),
    Variant("model-train-lora-dropout", lora_dropout=LORA_P),
    Variant("model-train-both-dropouts-untied", tie_weights=False, dropout=0.2,
            lora_dropout=LORA_P),
    Variant("llama-model-all-targets", targets=("c_attn", "c_proj", "c_gate", "c_fc"),
            tie_weights=False, bias=False, llama=True),
    Variant("llama-model-train-both-dropouts", targets=("c_attn", "c_proj", "c_gate", "c_fc"),
            tie_weights=False, bias=False, dropout=0.2, lora_dropout=LORA_P, llama=True),
]


def adapted_pair(ctx: Context, v: Variant, rng: np.random.Generator
                 ) -> tuple[NumpyGPT, torch_gpt.GPT, LoRAConfig]:
    """The same adapted model in both twins: numpy's base and adapter (A as initialised, B
    drawn at random) loaded into torch by name."""
    config = (llama_config(ctx.config) if v.llama else ctx.config).replace(
        tie_weights=v.tie_weights, bias=v.bias, dropout=v.dropout)
    lcfg = LoRAConfig(rank=2, alpha=5.0, dropout=v.lora_dropout, targets=v.targets)
    ref = NumpyGPT(config, dtype=ctx.ref_dtype, seed=ctx.seed)
    ref.add_lora(lcfg, seed=ctx.seed)
    for name, p in ref.lora_params.items():  # B != 0, so that dA is not trivially zero
        if ".lora_B." in name:  # a trained adapter's size, like the base weights' N(0, 0.02)
            p[...] = 0.02 * rng.standard_normal(p.shape)
    model = torch_gpt.GPT(config, attn="manual", device=ctx.device, dtype=ctx.torch_dtype,
                          init=False)
    apply_lora(model, lcfg)
    model.load_numpy_params({**ref.params, **ref.lora_params})
    return ref, model, lcfg


def run_model(ctx: Context, v: Variant) -> None:
    rng = ctx.rng(1)
    ref, model, lcfg = adapted_pair(ctx, v, rng)
    train = v.dropout > 0 or v.lora_dropout > 0
    B, T = ctx.batch_size, min(ctx.seq_len, ref.config.block_size)
    own = set(model.state_dict())
    if own != set(ref.params) | set(ref.lora_params):
        ctx.fail("state_dict keys", f"torch {sorted(own)} != numpy's params + lora_params")
        return
    for p in model.parameters():  # unfrozen only here, to compare every gradient
        p.requires_grad_(True)
    model.train(train)
    ctx.plant_fault(model)

    idx = rng.integers(0, ref.config.vocab_size, (B, T))
    tgt = rng.integers(0, ref.config.vocab_size, (B, T))
    masks = make_dropout_masks(ref.config, B, T, rng, lcfg) if train else None
    logits, loss, cache = ref.forward(idx, tgt, train=train, dropout_masks=masks)
    grads = ref.backward(cache)
    t_masks = None if masks is None else {k: ctx.tensor(m) for k, m in masks.items()}
    t_logits, t_loss = model(ctx.tensor(idx), ctx.tensor(tgt), dropout_masks=t_masks)
    t_loss.backward()
    ctx.check("logits", t_logits, logits, "forward")
    ctx.check("loss", t_loss, loss, "forward")
    for name, p in model.named_parameters():
        t_grad = torch.zeros_like(p) if p.grad is None else p.grad
        ctx.check(f"grad:{name}", t_grad, grads[name], "grad")


def run_merged(ctx: Context, llama: bool = False) -> None:
    """Merged == adapted in each twin (eval mode), and the twins' merged weights agree."""
    rng = ctx.rng(2)
    v = (Variant("merged-llama", ("c_attn", "c_proj", "c_gate", "c_fc"), tie_weights=False,
                 bias=False, llama=True) if llama else Variant("merged", tie_weights=False))
    ref, model, _ = adapted_pair(ctx, v, rng)
    model.eval()
    B, T = ctx.batch_size, min(ctx.seq_len, ref.config.block_size)
    idx = rng.integers(0, ref.config.vocab_size, (B, T))
    adapted = ref.forward(idx)[0]
    with torch.no_grad():
        t_adapted = model(ctx.tensor(idx))[0]
    ref.merge_lora()
    merge_lora(model)
    if set(model.state_dict()) != set(ref.params) or lora_numpy_params(model):
        ctx.fail("merged state_dict keys", "merge_lora left adapter tensors behind")
        return
    with torch.no_grad():
        t_merged = model(ctx.tensor(idx))[0]
    ctx.check("numpy merged logits vs adapted", ref.forward(idx)[0], adapted, "forward")
    ctx.check("torch merged logits vs adapted", t_merged, t_adapted, "forward")
    ctx.check("torch merged logits vs numpy merged", t_merged, ref.forward(idx)[0], "forward")
    for name, p in model.named_parameters():
        if ".c_" in name and name.endswith(".weight"):
            ctx.check(f"merged:{name}", p, ref.params[name], "forward")


register(Case("lora/layer", functools.partial(run_layer, dropout=False)))
register(Case("lora/layer-dropout", functools.partial(run_layer, dropout=True)))
for _v in VARIANTS:
    register(Case(f"lora/{_v.name}", functools.partial(run_model, v=_v)))
register(Case("lora/merged", run_merged))
register(Case("lora/llama-merged", functools.partial(run_merged, llama=True)))
