"""Training cases: 10 AdamW steps in both twins from the same parameters and batches.

Each step: lr from the warmup+cosine schedule (numpy_gpt.nn.optim.get_lr, nanoGPT's), two
micro-batches whose losses are scaled by 1/2 (gradient accumulation = the mean), global-norm
clipping, then AdamW with nanoGPT's decay groups. Compared: the loss and the pre-clip
gradient norm at every step, then every parameter at the end (STYLE.md P6). The clip
threshold is low enough that clipping is active on most steps.

AdamW's eps is 1e-6 here, not nanoGPT's 1e-8, on purpose. The key part of attn.c_attn.bias
has an exactly zero gradient in exact arithmetic (adding q.b_k to a whole row of scores does
not change the softmax), so in float32 each twin's value is pure rounding noise (~1e-10).
With eps = 1e-8 AdamW divides that noise by sqrt(v) ~ |noise| and takes lr-sized steps of
random sign in each twin: 4 of 16 seeds then exceeded the float32 bound of 1e-4 on that
tensor (worst 1.7e-4). With eps = 1e-6 the noise stays noise (worst 7e-6 over 16 seeds),
while gradients well above 1e-6 are still normalised essentially as with 1e-8.
"""

from __future__ import annotations

import functools

import torch

import torch_gpt
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from numpy_gpt.nn.optim import AdamW, clip_grad_norm, get_lr
from torch_gpt.optim import clip_grad_norm as torch_clip_grad_norm
from torch_gpt.optim import configure_optimizer, set_lr

from ..harness import Context
from . import Case, llama_config, register

STEPS, N_MICRO, MAX_NORM = 10, 2, 0.5
ADAMW = {"betas": (0.9, 0.95), "eps": 1e-6, "weight_decay": 0.1}  # eps: see the docstring
SCHEDULE = {"learning_rate": 1e-2, "warmup_iters": 3, "lr_decay_iters": STEPS, "min_lr": 1e-3}


def compare_training(ctx: Context, config: GPTConfig, *, attn: str = "sdpa") -> None:
    """Run both twins through STEPS optimizer steps; record the trajectory and the params."""
    rng = ctx.rng(2)
    B, T = ctx.batch_size, min(ctx.seq_len, config.block_size)
    ref = NumpyGPT(config, dtype=ctx.ref_dtype, seed=ctx.seed, device=ctx.numpy_device)
    model = torch_gpt.GPT.from_params(config, ref.params, attn=attn, device=ctx.device,
                                      dtype=ctx.torch_dtype)
    ctx.plant_fault(model)
    ref_opt = AdamW(ref.params, lr=SCHEDULE["learning_rate"], **ADAMW)
    opt = configure_optimizer(model, lr=SCHEDULE["learning_rate"], **ADAMW)
    batches = [[(rng.integers(0, config.vocab_size, (B, T)),
                 rng.integers(0, config.vocab_size, (B, T))) for _ in range(N_MICRO)]
               for _ in range(STEPS)]

    for step, micro in enumerate(batches):
        lr = get_lr(step, **SCHEDULE)
        # numpy_gpt: grads of (loss / N_MICRO) summed over micro-batches
        ref_loss, acc = 0.0, None
        for x, y in micro:
            _, loss, cache = ref.forward(x, y)
            g = ref.backward(cache, dloss=1.0 / N_MICRO)
            acc = g if acc is None else {k: acc[k] + g[k] for k in acc}
            ref_loss += loss / N_MICRO
        ref_norm = clip_grad_norm(acc, MAX_NORM)
        ref_opt.step(acc, lr=lr)
        # torch_gpt: autograd accumulates into .grad
        t_loss = 0.0
        for x, y in micro:
            _, loss = model(ctx.tensor(x), ctx.tensor(y))
            (loss / N_MICRO).backward()
            t_loss += loss.item() / N_MICRO
        t_norm = torch_clip_grad_norm(model, MAX_NORM)
        set_lr(opt, lr)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.check(f"loss@step{step}", t_loss, ref_loss, "train")
        ctx.check(f"grad_norm@step{step}", t_norm, ref_norm, "train")

    with torch.no_grad():
        for name, p in model.named_parameters():
            ctx.check(f"param:{name}", p, ref.params[name], "train")


def run_train(ctx: Context, tie_weights: bool, bias: bool, gelu: str, attn: str,
              llama: bool = False, rope_layout: str | None = None) -> None:
    config = llama_config(ctx.config) if llama else ctx.config
    config = config.replace(tie_weights=tie_weights, bias=bias, gelu=gelu, dropout=0.0,
                            rope_layout=rope_layout or config.rope_layout)
    compare_training(ctx, config, attn=attn)


register(Case("train/adamw-tied-bias-tanh-sdpa", functools.partial(
    run_train, tie_weights=True, bias=True, gelu="tanh", attn="sdpa"), cupy=True))
register(Case("train/adamw-untied-nobias-exact-manual", functools.partial(
    run_train, tie_weights=False, bias=False, gelu="exact", attn="manual"), cupy=True))
register(Case("train/adamw-llama-untied-nobias-sdpa", functools.partial(
    run_train, tie_weights=False, bias=False, gelu="tanh", attn="sdpa", llama=True),
    cupy=True))
register(Case("train/adamw-llama-interleaved-tied-bias-manual", functools.partial(
    run_train, tie_weights=True, bias=True, gelu="tanh", attn="manual", llama=True,
    rope_layout="interleaved"), cupy=True))
