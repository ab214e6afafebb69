"""FLOP counts per benchmark step: the nanoGPT / PaLM estimate, stated exactly.

    N      = the parameters that take part in a matmul per token: every transformer-block
             parameter, ln_f, and the lm_head matmul (V*C, whether tied to wte or not).
             The embedding tables wte (as a lookup) and wpe are not counted: a lookup does
             no arithmetic. Biases and LayerNorm gains count like weights (as nanoGPT's
             num_params does); they are < 1 % of N at every benchmark size.
    fwd+bwd per token = 6 N + 12 L T C     (2 FLOPs per multiply-add, forward 2N, backward 4N;
                                            attention: q k^T and att v are 2 T C each per
                                            layer forward, x3 with backward)
    forward per token = 2 N + 4 L T C      (one third)

The attention term counts the full T x T score matrix although half of it is masked, as PaLM
(appendix B) and nanoGPT's estimate_mfu do; so does the MFU built on it. A train step counts
as fwd+bwd: clipping and AdamW add ~15 FLOPs per parameter (< 0.5 % at every size here) and
are left out, as in both references.

Generation counts what the twins' generate.py perform (greedy, one sequence; generate-b4 and
generate-b16 decode 4 and 16 prompts together with batch_generate.py: B times the work):
    without a KV cache, each new token re-runs the full forward over its whole context
    (prompt + tokens so far, lm_head on every position), so the cost grows with the square
    of the length;
    with a KV cache, one prefill over the prompt (lm_head on its last position only), then
    one position per new token attending to all cached keys: 2 N + 4 L C t for t keys.

Ref: Chowdhery et al. 2022 (PaLM) appendix B; Kaplan et al. 2020 (C = 6N);
     nanoGPT model.py estimate_mfu.
"""

from __future__ import annotations

from numpy_gpt.nn.config import GPTConfig

TRAIN_WORKLOADS = ("forward", "fwdbwd", "train")
GEN_WORKLOADS = ("generate", "generate-nocache", "generate-b4", "generate-b16")
# rows decoded together (batch_generate.py) by each generation workload; the rest decode one
GEN_BATCH = {"generate-b4": 4, "generate-b16": 16}
WORKLOADS = TRAIN_WORKLOADS + GEN_WORKLOADS


def matmul_params(config: GPTConfig) -> int:
    """N: transformer blocks + ln_f + the lm_head matmul (V*C); no wte lookup, no wpe.

    Per block: 12 C^2 weights (c_attn 3C^2, c_proj C^2, c_fc 4C^2, mlp.c_proj 4C^2) plus,
    with bias, 13 C biases and LayerNorm biases (3C + C + 4C + C + 2C + 2C) -- with bias off,
    only the 2 C LayerNorm gains remain.
    """
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    per_block = 12 * C * C + (13 * C if config.bias else 2 * C)
    ln_f = 2 * C if config.bias else C
    return L * per_block + ln_f + V * C


def flops_per_token(config: GPTConfig, T: int, backward: bool) -> int:
    """6N + 12 L T C with backward, 2N + 4 L T C forward only (see the module docstring)."""
    N, L, C = matmul_params(config), config.n_layer, config.n_embd
    if backward:
        return 6 * N + 12 * L * T * C
    return 2 * N + 4 * L * T * C


def step_flops(config: GPTConfig, B: int, T: int, workload: str) -> int:
    """FLOPs of one timed step of `workload` on a (B, T) batch.

    Known answer (tests/bench/test_bench.py): V=11, C=8, L=2, NH=2, bias, tied, B=2, T=3:
        per block 12*64 + 13*8 = 872; N = 2*872 + 16 (ln_f) + 11*8 (lm_head) = 1848
        fwd+bwd per token 6*1848 + 12*2*3*8 = 11088 + 576 = 11664; x B*T = 6 -> 69984
        forward per token 2*1848 + 4*2*3*8 = 3696 + 192 = 3888;    x 6     -> 23328
    """
    if workload == "forward":
        return B * T * flops_per_token(config, T, backward=False)
    if workload in ("fwdbwd", "train"):
        return B * T * flops_per_token(config, T, backward=True)
    raise ValueError(f"step_flops: {workload!r} is not one of {TRAIN_WORKLOADS}")


def generation_flops(config: GPTConfig, B: int, prompt_len: int, new_tokens: int,
                     kv_cache: bool) -> int:
    """FLOPs to generate `new_tokens` after a `prompt_len` prompt, B sequences at once.

    The first new token comes from the forward over the prompt; each later one needs one more
    forward (the last token needs none after it), so contexts are t = prompt_len ..
    prompt_len + new_tokens - 1 (all within block_size here). Without a cache each forward
    covers its whole context t: t (2N + 4 L t C). With a cache the prompt is prefilled once,
    P (2N + 4 L P C) minus the lm_head on all but its last position (2 V C each), and each
    later token is one position against t keys: 2N + 4 L C t.

    Known answer (the tests' tiny config, N=1848, V*C=88, L=2, C=8), P=2, 3 new tokens:
        no cache: t=2,3,4: 2(3696+128) + 3(3696+192) + 4(3696+256) = 35120
        cache:    prefill 2(3696+128) - 2*88 = 7472; t=3,4: 3696+192 + 3696+256 = 7840
                  total 15312
    """
    N, L, C = matmul_params(config), config.n_layer, config.n_embd
    head = config.vocab_size * C
    contexts = range(prompt_len, prompt_len + new_tokens)
    if new_tokens == 0:
        return 0
    if not kv_cache:
        per_seq = sum(t * (2 * N + 4 * L * t * C) for t in contexts)
    else:
        P = prompt_len
        per_seq = P * (2 * N + 4 * L * P * C) - 2 * head * (P - 1)  # prefill, last_only head
        per_seq += sum(2 * N + 4 * L * C * t for t in contexts[1:])
    return B * per_seq
