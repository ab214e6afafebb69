"""bench/flops.py: FLOP and byte counts by known answers worked out by hand (GPT-2 and Llama
shapes, one row and batched, with and without the KV cache), and the runner counting every
generation workload the way its decoder runs it (issue 27: generate-b4/-b16 were counted as
if they recomputed the whole context per token)."""

from types import SimpleNamespace

import pytest

from bench.backends import BACKENDS
from bench.flops import (
    GEN_WORKLOADS,
    generation_bytes,
    generation_flops,
    matmul_params,
    step_flops,
    uses_kv_cache,
    working_set_bytes,
)
from bench.runner import Job, Options, _finish, base_row
from bench.sizes import SIZES, get_size
from numpy_gpt.nn.config import GPTConfig, arch_fields
from numpy_gpt.nn.model import GPT

TINY = GPTConfig(vocab_size=11, block_size=4, n_layer=2, n_head=2, n_embd=8)
# Llama-shaped: 2 query heads of hs=4 sharing 1 K/V head (C_kv = 4), SwiGLU F=16, RMSNorm,
# no biases, an untied head
LLAMA = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, norm="rmsnorm",
                  position="rope", mlp="swiglu", ffn_hidden=16, n_kv_head=1, bias=False,
                  tie_weights=False)


def test_gpt2_known_answer():
    """Tiny config: V=11, C=8, L=2, NH=2, bias, tied head; B=2, T=3.

    Per block: c_attn 3*8*8 + 24 = 216, c_proj 64 + 8 = 72, c_fc 256 + 32 = 288,
    mlp.c_proj 256 + 8 = 264, ln_1 + ln_2 16 + 16 = 32  ->  872  (= 12 C^2 + 13 C).
    N = 2 * 872 + ln_f 16 + lm_head 11 * 8 = 1848 (wte lookup and wpe not counted).
    fwd+bwd per token: 6 N + 12 L T C = 11088 + 576 = 11664; 6 tokens -> 69984.
    forward per token: 2 N + 4 L T C = 3696 + 192 = 3888;   6 tokens -> 23328.
    """
    assert matmul_params(TINY) == 1848
    assert step_flops(TINY, 2, 3, "train") == 69984
    assert step_flops(TINY, 2, 3, "fwdbwd") == 69984
    assert step_flops(TINY, 2, 3, "forward") == 23328


def test_generation_known_answers_one_row_and_batched():
    """Prompt P=2, 3 new tokens, tiny config (N=1848, V*C=88, L=2, C=8).

    One row, no cache: a forward over the context t = 2, 3, 4 for each new token:
        2(2N + 4L*2*C) + 3(2N + 4L*3*C) + 4(2N + 4L*4*C)
        = 2(3696 + 128) + 3(3696 + 192) + 4(3696 + 256) = 7648 + 11664 + 15808 = 35120
    One row, cache: prefill 2(3696 + 128) minus the head on the first prompt position
    (2 V C = 176) = 7472; then one position against t = 3 and 4 keys:
        (3696 + 4L*C*3) + (3696 + 4L*C*4) = 3888 + 3952 = 7840;  total 15312
    B = 2 rows (batch_generate: same-length prompts, so no padding, and each decode step is
    the one-row step for each row; the weights are shared, the arithmetic is not):
        cache 2 x 15312 = 30624;  no cache 2 x 35120 = 70240
    B = 16 with the cache: 16 x 15312 = 244992 -- not 16 x 35120 = 561920, the no-cache
    count that made generate-b16 show 917 % MFU.
    """
    assert generation_flops(TINY, 1, 2, 3, kv_cache=False) == 35120
    assert generation_flops(TINY, 1, 2, 3, kv_cache=True) == 15312
    assert generation_flops(TINY, 2, 2, 3, kv_cache=True) == 30624
    assert generation_flops(TINY, 2, 2, 3, kv_cache=False) == 70240
    assert generation_flops(TINY, 16, 2, 3, kv_cache=True) == 244992
    assert generation_flops(TINY, 4, 2, 0, kv_cache=True) == 0


def test_generation_bytes_known_answers():
    """Bytes a decoder must read, float32 (4 bytes) weights and cache, P=2, 3 new tokens.

    Weights: N x 4 = 7392 bytes per forward pass, once whatever B (the rows share them).
    No cache: 3 forwards (one per new token) = 22176, for B = 1 or 2.
    Cache: the prefill and 2 decode steps = 3 passes = 22176 of weights; the decode step at
    t keys reads 2 (K and V) x L x t x C_kv values per row: t = 3, 4 -> 2*2*8*7 = 224
    values = 896 bytes.  B=1: 22176 + 896 = 23072;  B=2: 22176 + 2*896 = 23968.
    float64 weights, bf16 cache (B=1): 3 x 1848 x 8 + 224 x 2 = 44352 + 448 = 44800.
    """
    assert generation_bytes(TINY, 1, 2, 3, False, 4, 4) == 22176
    assert generation_bytes(TINY, 2, 2, 3, False, 4, 4) == 22176
    assert generation_bytes(TINY, 1, 2, 3, True, 4, 4) == 23072
    assert generation_bytes(TINY, 2, 2, 3, True, 4, 4) == 23968
    assert generation_bytes(TINY, 1, 2, 3, True, 8, 2) == 44800
    # one step at 4 keys, B=2: weights 7392 + 2 rows x 2*2*8*4 values x 4 bytes = 7392 + 1024
    assert working_set_bytes(TINY, 2, 4, 4, 4) == 8416


def test_llama_shapes_known_answer():
    """LLAMA: V=11, C=8, L=2, 2 query heads of hs=4 and 1 K/V head (GQA), SwiGLU F=16,
    RMSNorm, no bias, untied head.

    c_attn: (n_head + 2 n_kv_head) hs = (2 + 2) * 4 = 16 rows x 8 = 128 (GPT-2's 3C^2 = 192)
    c_proj 8*8 = 64; SwiGLU's three matrices c_gate, c_fc (16, 8) and c_proj (8, 16): 384
    ln_1, ln_2 RMSNorm gains 8 + 8 = 16  ->  per block 592; x 2 = 1184
    N = 1184 + ln_f 8 + lm_head 11*8 = 1280 (the untied wte is a lookup: not counted)
    train, B=2, T=3: 6N + 12 L T C = 7680 + 576 = 8256 per token -> 6 tokens 49536
    (the attention term is GPT-2's: every query head still scores T keys of hs)
    generate with cache, P=2, 3 new: prefill 2(2560 + 128) - 2*88 = 5200; t=3: 2560 + 192,
    t=4: 2560 + 256 -> 5200 + 2752 + 2816 = 10768
    bytes (float32): 3 x 1280 x 4 = 15360 of weights; K/V of 1 head: 2*2*4*(3+4) = 112
    values x 4 = 448 per row  ->  B=1 15808, B=2 16256
    """
    assert matmul_params(LLAMA) == 1280
    assert matmul_params(LLAMA) == GPT(LLAMA).num_params() - 11 * 8  # minus the wte lookup
    assert step_flops(LLAMA, 2, 3, "train") == 49536
    assert generation_flops(LLAMA, 1, 2, 3, kv_cache=True) == 10768
    assert generation_bytes(LLAMA, 1, 2, 3, True, 4, 4) == 15808
    assert generation_bytes(LLAMA, 2, 2, 3, True, 4, 4) == 16256


def test_counts_follow_the_model_for_every_arch():
    """N equals numpy_gpt's own parameter count (minus the embedding lookups) for GPT-2 with
    and without bias, tied or not, and for --arch llama with its defaults (GQA n_head/2,
    SwiGLU's 8/3 C rounded: ffn_width) -- so a new config field that adds parameters and is
    not counted here fails this test."""
    for cfg in (TINY, TINY.replace(bias=False), TINY.replace(tie_weights=False),
                GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16,
                          **arch_fields("llama", 4))):
        lookup = 0 if cfg.tie_weights else cfg.vocab_size * cfg.n_embd
        assert matmul_params(cfg) == GPT(cfg).num_params() - lookup, cfg.describe_arch()
    gpt2 = SIZES["gpt2-124m"].config
    assert matmul_params(gpt2) == 124_439_808 - 1024 * 768  # GPT-2 small, all params minus wpe


def test_a_config_without_the_llama_fields_is_gpt2():
    """The counts read the Llama fields with getattr defaults: a stand-in with GPT-2's
    fields only (an older config object) counts as GPT-2."""
    old = SimpleNamespace(vocab_size=11, block_size=4, n_layer=2, n_head=2, n_embd=8, bias=True)
    assert matmul_params(old) == 1848
    assert generation_bytes(old, 1, 2, 3, True, 4, 4) == 23072


@pytest.mark.parametrize("workload", GEN_WORKLOADS)
def test_runner_counts_each_generation_workload_as_its_decoder_runs(workload):
    """The row's FLOPs and bytes are the cached count for every workload but
    generate-nocache (batch_generate.py always caches; generate-b16 was counted uncached)."""
    kv = workload != "generate-nocache"
    assert uses_kv_cache(workload) is kv
    size = get_size("tiny", quick=True)
    job = Job(BACKENDS["numpy-f32"], size, workload)
    row = base_row(job, Options(threads=1, quick=True))
    B = {"generate-b4": 4, "generate-b16": 16}.get(workload, 1)
    _finish(row, job, {"status": "ok", "ms_median": 10.0, "ms_min": 9.0, "gen_batch": B,
                       "prompt_len": 4, "new_tokens": 12})
    assert row["flops_per_step"] == generation_flops(size.config, B, 4, 12, kv_cache=kv)
    assert row["bytes_per_step"] == generation_bytes(size.config, B, 4, 12, kv, 4, 4)
    assert row["tokens_per_s"] == pytest.approx(B * 12 / 0.01)
    assert row["bytes_per_token"] == pytest.approx(row["bytes_per_step"] / (B * 12))
