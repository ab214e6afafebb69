"""Generation cases: the KV cache against full recomputation, and tokens across the twins.

    generate/kv-cache-*   logits of KV-cache decoding vs model.forward on the whole context,
                          in each twin and across them: a prefill, a batch fed in uneven
                          chunks, and a one-token-at-a-time decode that runs past block_size
                          (so the context is cropped and the cache rebuilt)   [kv_cache]
    generate/probs        the logits processing (penalty, temperature, top-k, top-p, softmax)
                          of torch_gpt vs numpy_gpt on the same logits        [forward]
    generate/greedy       greedy tokens: numpy with cache == numpy without == torch
    generate/sampled-*    seeded sampled tokens (temperature, top-k, top-p, penalty): torch
                          == numpy, and cache == no cache
    generate/batched-*    B prompts of different lengths (one longer than block_size) decoded
                          together: each row's logits vs its own Decoder [kv_cache], and its
                          tokens (greedy, sampled with a stop id) vs generate() alone with
                          the row's Generator, in each twin and across them

The "llama" cases run the same at the --config size Llama-shaped (cases.llama_config): the KV
cache then holds n_kv_head heads and turns each new key by its own position (RoPE's offset),
in both pair layouts.

Token rows compare id sequences and must be identical (bound 0: "identical tokens" is the
DESIGN's contract, not a tolerance); they are filed under kv_cache. A sampled token can only
differ between the twins if u * total falls within rounding distance of a cumsum boundary;
DESIGN.md asks for identical tokens "on a trained model", whose logits are decisive. Here a
random model is made decisive by scaling ln_f's weight so the logits have a standard deviation
of about 3 (the logits are ln_f(x) @ W_head^T, with ln_f(x) of unit scale and W_head rows of
std 0.02, hence logits std ~ 0.02 sqrt(C) before scaling), which keeps some entropy to sample.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np
import torch

import torch_gpt
from numpy_gpt.generation import batch_generate as np_batch
from numpy_gpt.generation import generate as np_gen
from numpy_gpt.generation.sampling import SamplingConfig, row_rngs
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT
from torch_gpt import batch_generate as t_batch
from torch_gpt import generate as t_gen

from ..harness import Context, compare
from . import Case, llama_config, register

IDENTICAL = 0.0  # token sequences: equal or not (see the module docstring)
LOGIT_STD = 3.0  # target logits scale of the decisive model

SAMPLED = {
    "temperature": SamplingConfig(temperature=1.0),
    "topk": SamplingConfig(temperature=0.8, top_k=5),
    "topp": SamplingConfig(top_p=0.9),
    "all": SamplingConfig(temperature=1.2, top_k=8, top_p=0.95, repetition_penalty=1.3),
}


def make_twins(ctx: Context, config: GPTConfig, decisive: bool = False
               ) -> tuple[NumpyGPT, torch_gpt.GPT]:
    """The numpy reference and a torch model with the same parameters (eval mode)."""
    ref = NumpyGPT(config, dtype=ctx.ref_dtype, seed=ctx.seed, device=ctx.numpy_device)
    if decisive:
        ref.params["transformer.ln_f.weight"] *= LOGIT_STD / (0.02 * math.sqrt(config.n_embd))
    model = torch_gpt.GPT.from_params(config, ref.params, device=ctx.device,
                                      dtype=ctx.torch_dtype).eval()
    return ref, model


def decode_logits(decoder, tokens: list[int]) -> list:
    """The decoder's logits before each of `tokens` is appended, then after the last."""
    out = [decoder.logits]
    for t in tokens:
        out.append(decoder.append(t))
    return out


def case_config(ctx: Context, llama: bool, rope_layout: str | None = None) -> GPTConfig:
    """The context's config, Llama-shaped when `llama` (with `rope_layout` if given)."""
    config = llama_config(ctx.config) if llama else ctx.config
    return config.replace(rope_layout=rope_layout or config.rope_layout)


@torch.no_grad()
def kv_cache_case(ctx: Context, tie_weights: bool, bias: bool, gelu: str, llama: bool = False,
                  rope_layout: str | None = None) -> None:
    config = case_config(ctx, llama, rope_layout).replace(tie_weights=tie_weights, bias=bias,
                                                          gelu=gelu)
    ref, model = make_twins(ctx, config)
    rng = ctx.rng(3)
    V, S = config.vocab_size, config.block_size

    # prefill, then uneven chunks, of a (B, S) batch: every position vs one full forward
    B = ctx.batch_size
    idx = rng.integers(0, V, (B, S))
    full = ref.forward(idx)[0]
    cuts = sorted({0, S, *rng.integers(1, S, 2).tolist()})
    np_cache = np_gen.KVCache(config, B, ref.dtype, ref.xp)
    np_chunks = [np_gen.forward_cached(ref, idx[:, a:b], np_cache)
                 for a, b in itertools.pairwise(cuts)]
    ctx.check(f"numpy chunks {cuts}", np.concatenate(np_chunks, axis=1), full, "kv_cache")
    t_full = model(ctx.tensor(idx))[0]
    t_cache = t_gen.KVCache(config.n_layer, S)
    t_chunks = [t_gen.forward_cached(model, ctx.tensor(idx[:, a:b]), t_cache)
                for a, b in itertools.pairwise(cuts)]
    ctx.check(f"torch chunks {cuts}", torch.cat(t_chunks, dim=1), t_full, "kv_cache")
    ctx.check(f"torch chunks {cuts} vs numpy", torch.cat(t_chunks, dim=1), full, "kv_cache")

    # one token at a time past block_size: the context is cropped and the cache rebuilt
    prompt = rng.integers(0, V, min(3, S)).tolist()
    forced = rng.integers(0, V, 2 * S).tolist()
    seq = prompt + forced
    recompute = np.stack([ref.forward(np.array([seq[:n][-S:]]))[0][0, -1]
                          for n in range(len(prompt), len(seq) + 1)])
    t_recompute = torch.stack([model(ctx.tensor(np.array([seq[:n][-S:]])))[0][0, -1]
                               for n in range(len(prompt), len(seq) + 1)])
    np_steps = np.stack(decode_logits(np_gen.Decoder(ref, prompt), forced))
    t_steps = torch.stack(decode_logits(t_gen.Decoder(model, prompt), forced))
    steps = f"decode {len(forced)} steps past T={S}"
    ctx.check(f"numpy {steps}", np_steps, recompute, "kv_cache")
    ctx.check(f"torch {steps}", t_steps, t_recompute, "kv_cache")
    ctx.check(f"torch {steps} vs numpy", t_steps, recompute, "kv_cache")


def probs_case(ctx: Context) -> None:
    """sampling_probs of both twins on the same float64 logits and seen-token mask."""
    rng = ctx.rng(4)
    V = ctx.config.vocab_size
    logits = rng.normal(0.0, LOGIT_STD, V)
    seen = rng.random(V) < 0.3
    t_logits = torch.from_numpy(logits).to(ctx.device)
    t_seen = torch.from_numpy(seen).to(ctx.device)
    for name, cfg in SAMPLED.items():
        ref = np_gen.sampling_probs(logits, seen, cfg)
        ctx.check(f"probs {name}", t_gen.sampling_probs(t_logits, t_seen, cfg), ref, "forward")


def tokens_case(ctx: Context, config: SamplingConfig, llama: bool = False) -> None:
    """Generated ids: numpy with cache (the reference) vs without, and torch with/without."""
    model_config = case_config(ctx, llama)
    ref, model = make_twins(ctx, model_config, decisive=True)
    S = model_config.block_size
    prompt = ctx.rng(5).integers(0, model_config.vocab_size, min(3, S)).tolist()
    config = dataclasses.replace(config, max_new_tokens=2 * S + 2, seed=ctx.seed)
    tokens = {}
    for twin, gen, m in (("numpy", np_gen.generate, ref), ("torch", t_gen.generate, model)):
        for cache in (True, False):
            tokens[twin, cache] = list(gen(m, prompt, config, use_kv_cache=cache))
    reference = np.array(tokens["numpy", True])
    for (twin, cache), got in tokens.items():
        if (twin, cache) != ("numpy", True):
            name = f"{twin} tokens {'with' if cache else 'without'} cache vs numpy with cache"
            ctx.rows.append(compare(ctx.case, name, np.array(got), reference, ctx.dtype,
                                    ctx.device, IDENTICAL, category="kv_cache"))


register(Case("generate/kv-cache-tied-bias-tanh", functools.partial(
    kv_cache_case, tie_weights=True, bias=True, gelu="tanh"), cupy=True))
register(Case("generate/kv-cache-untied-nobias-exact", functools.partial(
    kv_cache_case, tie_weights=False, bias=False, gelu="exact"), cupy=True))
register(Case("generate/probs", probs_case))  # host logits only: sampling runs on the host
register(Case("generate/greedy", functools.partial(
    tokens_case, config=SamplingConfig(greedy=True)), cupy=True))
for _name, _cfg in SAMPLED.items():
    register(Case(f"generate/sampled-{_name}", functools.partial(tokens_case, config=_cfg),
                  cupy=True))
register(Case("generate/kv-cache-llama-untied-nobias", functools.partial(
    kv_cache_case, tie_weights=False, bias=False, gelu="tanh", llama=True), cupy=True))
register(Case("generate/kv-cache-llama-interleaved-tied-bias", functools.partial(
    kv_cache_case, tie_weights=True, bias=True, gelu="tanh", llama=True,
    rope_layout="interleaved"), cupy=True))
register(Case("generate/llama-greedy", functools.partial(
    tokens_case, config=SamplingConfig(greedy=True), llama=True), cupy=True))
register(Case("generate/llama-sampled-all", functools.partial(
    tokens_case, config=SAMPLED["all"], llama=True), cupy=True))


BATCH_PROMPT_LENGTHS = (1, 3, 2, 9)  # different lengths; 9 > the tiny block_size: cropped


def batched_case(ctx: Context, config: SamplingConfig, llama: bool = False) -> None:
    """generate_batch vs generate() per prompt (numpy alone = the reference), both twins."""
    model_config = case_config(ctx, llama)
    ref, model = make_twins(ctx, model_config, decisive=True)
    S, V = model_config.block_size, model_config.vocab_size
    rng = ctx.rng(6)
    prompts = [rng.integers(0, V, n).tolist() for n in BATCH_PROMPT_LENGTHS]
    config = dataclasses.replace(config, max_new_tokens=2 * S + 2, seed=ctx.seed)

    # logits: the batch decoder's rows against one Decoder per prompt, fed the same tokens
    forced = rng.integers(0, V, (len(prompts), S + 2))
    for twin, batch, single, m in (("numpy", np_batch.BatchDecoder, np_gen.Decoder, ref),
                                   ("torch", t_batch.BatchDecoder, t_gen.Decoder, model)):
        dec = batch(m, prompts)
        steps = [dec.logits.copy() if twin == "numpy" else dec.logits.clone()]
        for t in forced.T:
            steps.append(dec.append(t.tolist()).copy() if twin == "numpy"
                         else dec.append(t.tolist()).clone())
        for b, p in enumerate(prompts):
            alone = decode_logits(single(m, p), forced[b].tolist())
            got = [st[b] for st in steps]
            stack = np.stack if twin == "numpy" else torch.stack
            ctx.check(f"{twin} batch row {b} (prompt {len(p)}) logits vs alone",
                      stack(got), stack(alone), "kv_cache")

    # tokens: every row vs generate() alone with the same Generator
    alone = [list(np_gen.generate(ref, p, config, rng=r))
             for p, r in zip(prompts, row_rngs(config.seed, len(prompts)))]
    if not config.is_greedy:  # a stop id that the reference does produce, so rows stop early
        config = dataclasses.replace(config, stop_ids=(alone[1][len(alone[1]) // 2],))
        alone = [list(np_gen.generate(ref, p, config, rng=r))
                 for p, r in zip(prompts, row_rngs(config.seed, len(prompts)))]
    for twin, gen, m in (("numpy", np_batch.generate_batch, ref),
                         ("torch", t_batch.generate_batch, model)):
        for cache in (True, False):
            rows = gen(m, prompts, config, use_kv_cache=cache)
            for b, got in enumerate(rows):
                name = (f"{twin} batch {'with' if cache else 'without'} cache row {b} tokens "
                        "vs numpy alone")
                ctx.rows.append(compare(ctx.case, name, np.array(got), np.array(alone[b]),
                                        ctx.dtype, ctx.device, IDENTICAL, category="kv_cache"))


register(Case("generate/batched-greedy", functools.partial(
    batched_case, config=SamplingConfig(greedy=True)), cupy=True))
register(Case("generate/batched-sampled-stop", functools.partial(
    batched_case, config=SAMPLED["all"]), cupy=True))
register(Case("generate/batched-llama-greedy", functools.partial(
    batched_case, config=SamplingConfig(greedy=True), llama=True), cupy=True))
register(Case("generate/batched-llama-sampled-stop", functools.partial(
    batched_case, config=SAMPLED["all"], llama=True), cupy=True))
