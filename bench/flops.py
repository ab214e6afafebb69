"""FLOP and byte counts per benchmark step: the nanoGPT / PaLM estimate, stated exactly.

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

Llama-shaped blocks (DESIGN.md: `n_kv_head`, `mlp="swiglu"`, `ffn_hidden`, `norm="rmsnorm"`)
change only N: grouped-query attention's c_attn has (n_head + 2 n_kv_head) hs rows, so K and
V cost 2 C C_kv instead of 2 C^2 (C_kv = n_kv_head hs); SwiGLU has three (F, C)-sized
matrices (c_gate, c_fc, c_proj) where GELU's MLP has two (4C, C); RMSNorm has a gain and no
bias. The attention term is unchanged: every query head still scores T keys of size hs.
`block_shape` reads those fields with GPT-2's defaults, so a config without them is GPT-2
(tests/bench/test_flops.py checks N against numpy_gpt's parameter count for both shapes).

Generation counts what the twins' generate.py and batch_generate.py perform (greedy; B rows
decoded together by batch_generate.py are B times one row's work: the prompts are all the
same length, so nothing is padded). Which workloads use the KV cache is `uses_kv_cache`:
    without a KV cache, each new token re-runs the full forward over its whole context
    (prompt + tokens so far, lm_head on every position), so the cost grows with the square
    of the length;
    with a KV cache, one prefill over the prompt (lm_head on its last position only), then
    one position per new token attending to all cached keys: 2 N + 4 L C t for t keys.

Bytes (the memory roofline of decoding, `generation_bytes`): the least a decoder must read
from memory. Every forward pass (the prefill, each cached decode step, each uncached
recompute) reads every matmul weight once, N x the parameter dtype's size, whatever the
number of rows B; each cached decode step also reads, for every row, the keys and values of
the t positions it attends to, 2 L t C_kv x the cache dtype's size. Activations, the KV
writes and the one wte/wpe row per token are left out (< 1 % at the sizes here), so the
GB/s it gives is a lower bound of what was moved.

Ref: Chowdhery et al. 2022 (PaLM) appendix B; Kaplan et al. 2020 (C = 6N);
     nanoGPT model.py estimate_mfu; Pope et al. 2022 ("Efficiently Scaling Transformer
     Inference": decoding is bound by reading the weights and the KV cache).
"""

from __future__ import annotations

from typing import Any, NamedTuple

TRAIN_WORKLOADS = ("forward", "fwdbwd", "train")
GEN_WORKLOADS = ("generate", "generate-nocache", "generate-b4", "generate-b16")
# rows decoded together (batch_generate.py) by each generation workload; the rest decode one
GEN_BATCH = {"generate-b4": 4, "generate-b16": 16}
# the one generation workload that decodes without the KV cache (use_kv_cache=False); every
# other one, the batched ones included (batch_generate.py always caches), uses it
NO_CACHE_WORKLOADS = ("generate-nocache",)
WORKLOADS = TRAIN_WORKLOADS + GEN_WORKLOADS


def uses_kv_cache(workload: str) -> bool:
    """Whether a generation workload decodes with the KV cache (both twins' adapters)."""
    if workload not in GEN_WORKLOADS:
        raise ValueError(f"uses_kv_cache: {workload!r} is not one of {GEN_WORKLOADS}")
    return workload not in NO_CACHE_WORKLOADS


class BlockShape(NamedTuple):
    """What the counts need from a config, Llama fields read with GPT-2's defaults."""

    C: int  # n_embd
    L: int  # n_layer
    V: int  # vocab_size
    C_kv: int  # K/V width: n_kv_head * head size (= C without grouped-query attention)
    F: int  # MLP hidden width: ffn_hidden, else 4C
    swiglu: bool  # three MLP matrices (c_gate, c_fc, c_proj) instead of two
    rmsnorm: bool  # norms with a gain and no bias
    bias: bool


def block_shape(config: Any) -> BlockShape:
    """The shape of `config`'s blocks: GPTConfig's Llama fields (norm, mlp, ffn_width from
    ffn_hidden, kv_heads from n_kv_head), each read with GPT-2's default, so a config
    without them (an older one, a stand-in in a test) is GPT-2."""
    C, n_head = config.n_embd, config.n_head
    kv_heads = getattr(config, "kv_heads", None) or getattr(config, "n_kv_head", None) or n_head
    swiglu = getattr(config, "mlp", "gelu") == "swiglu"
    F = getattr(config, "ffn_width", None) or getattr(config, "ffn_hidden", None) or 4 * C
    return BlockShape(C=C, L=config.n_layer, V=config.vocab_size, C_kv=kv_heads * (C // n_head),
                      F=F, swiglu=swiglu, bias=bool(config.bias),
                      rmsnorm=getattr(config, "norm", "layernorm") == "rmsnorm")


def matmul_params(config: Any) -> int:
    """N: transformer blocks + ln_f + the lm_head matmul (V*C); no wte lookup, no wpe.

    GPT-2, per block: 12 C^2 weights (c_attn 3C^2, c_proj C^2, c_fc 4C^2, mlp.c_proj 4C^2)
    plus, with bias, 13 C biases and LayerNorm biases (3C + C + 4C + C + 2C + 2C) -- with
    bias off, only the 2 C LayerNorm gains remain.
    In general (block_shape): c_attn C (C + 2 C_kv), c_proj C^2, the MLP 2 or 3 (F x C)
    matrices; biases C + 2 C_kv, C, F (and F for c_gate), C; two norms of C gains (+ C
    biases each for a LayerNorm with bias).
    """
    s = block_shape(config)
    C, F = s.C, s.F
    n_mlp = 3 if s.swiglu else 2
    weights = C * (C + 2 * s.C_kv) + C * C + n_mlp * F * C
    biases = (C + 2 * s.C_kv) + C + (n_mlp - 1) * F + C if s.bias else 0
    norm = C if s.rmsnorm or not s.bias else 2 * C  # one norm's parameters
    return s.L * (weights + biases + 2 * norm) + norm + s.V * C


def flops_per_token(config: Any, T: int, backward: bool) -> int:
    """6N + 12 L T C with backward, 2N + 4 L T C forward only (see the module docstring)."""
    N, L, C = matmul_params(config), config.n_layer, config.n_embd
    if backward:
        return 6 * N + 12 * L * T * C
    return 2 * N + 4 * L * T * C


def step_flops(config: Any, B: int, T: int, workload: str) -> int:
    """FLOPs of one timed step of `workload` on a (B, T) batch.

    Known answer (tests/bench/test_flops.py): V=11, C=8, L=2, NH=2, bias, tied, B=2, T=3:
        per block 12*64 + 13*8 = 872; N = 2*872 + 16 (ln_f) + 11*8 (lm_head) = 1848
        fwd+bwd per token 6*1848 + 12*2*3*8 = 11088 + 576 = 11664; x B*T = 6 -> 69984
        forward per token 2*1848 + 4*2*3*8 = 3696 + 192 = 3888;    x 6     -> 23328
    """
    if workload == "forward":
        return B * T * flops_per_token(config, T, backward=False)
    if workload in ("fwdbwd", "train"):
        return B * T * flops_per_token(config, T, backward=True)
    raise ValueError(f"step_flops: {workload!r} is not one of {TRAIN_WORKLOADS}")


def generation_flops(config: Any, B: int, prompt_len: int, new_tokens: int,
                     kv_cache: bool) -> int:
    """FLOPs to generate `new_tokens` after a `prompt_len` prompt, B sequences at once.

    The first new token comes from the forward over the prompt; each later one needs one more
    forward (the last token needs none after it), so contexts are t = prompt_len ..
    prompt_len + new_tokens - 1 (all within block_size here). Without a cache each forward
    covers its whole context t: t (2N + 4 L t C). With a cache the prompt is prefilled once,
    P (2N + 4 L P C) minus the lm_head on all but its last position (2 V C each), and each
    later token is one position against t keys: 2N + 4 L C t. B rows: B times (the rows of
    the bench's batched workloads all have the same prompt length).

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


def generation_bytes(config: Any, B: int, prompt_len: int, new_tokens: int, kv_cache: bool,
                     weight_bytes: int, kv_bytes: int) -> int:
    """Bytes a decoder must read to generate `new_tokens` after a `prompt_len` prompt, B rows
    at once (the memory roofline; see the module docstring). `weight_bytes`, `kv_bytes`:
    the size of one weight and of one cached key/value element (4 for float32).

    Forward passes: without a cache one per new token (new_tokens), with it the prefill plus
    one decode step per later token; each reads the N weights once. A cached decode step at
    context t (the new token attends to t keys) also reads 2 L t C_kv cached values per row.

    Known answer (the tests' tiny config, N=1848, L=2, C_kv=8), P=2, 3 new tokens, float32:
        no cache: 3 forwards x 1848 x 4 = 22176, whatever B
        cache, B=1: 3 passes x 7392 = 22176; KV at t=3, 4: 2*2*8*(3+4) = 224 values x 4 = 896
                    total 23072;  B=2: 22176 + 2 x 896 = 23968
    """
    if new_tokens == 0:
        return 0
    weights = matmul_params(config) * weight_bytes
    if not kv_cache:
        return new_tokens * weights
    s = block_shape(config)
    keys = sum(range(prompt_len + 1, prompt_len + new_tokens))  # t over the decode steps
    return new_tokens * weights + B * 2 * s.L * s.C_kv * keys * kv_bytes


def kv_cache_bytes_per_token(config: Any, kv_bytes: int) -> int:
    """Bytes the KV cache holds for each position of one sequence, i.e. what every generated
    token adds: a key and a value (2) per layer, n_kv_head heads of head size hs each,
    2 L C_kv x kv_bytes (C_kv = n_kv_head hs; `kv_bytes`: 4 for float32, 2 for bfloat16).
    Grouped-query attention divides it by n_head / n_kv_head; the weights, the FLOPs and the
    query heads stay as they are. Both twins' caches hold exactly this per preallocated
    position (tests/bench/test_llama.py measures their arrays).

    Known answer: llama-6L-384 (L=6, 2 kv heads of 64) in float32: 2*6*2*64*4 = 6144 bytes;
    with n_kv_head = n_head = 6: 18432 (3x).
    """
    s = block_shape(config)
    return 2 * s.L * s.C_kv * kv_bytes


def working_set_bytes(config: Any, B: int, context: int, weight_bytes: int,
                      kv_bytes: int) -> int:
    """What one decode step at `context` keys reads: the weights and B rows' K/V. Against the
    last-level cache it says whether a decode can be served from cache (MBU > 100 % then
    says so, not that the count is wrong)."""
    s = block_shape(config)
    return matmul_params(config) * weight_bytes + B * 2 * s.L * s.C_kv * context * kv_bytes


def generation_counts(config: Any, workload: str, B: int, prompt_len: int, new_tokens: int,
                      weight_bytes: int, kv_bytes: int) -> dict[str, int]:
    """A generation row's counts, the KV cache used as its decoder uses it (uses_kv_cache):
    {"flops", "bytes" (generation_bytes), "working_set" (one decode step at the last
    position: the weights, plus the B rows' KV cache when cached)}."""
    kv = uses_kv_cache(workload)
    return {"flops": generation_flops(config, B, prompt_len, new_tokens, kv),
            "bytes": generation_bytes(config, B, prompt_len, new_tokens, kv, weight_bytes,
                                      kv_bytes),
            "working_set": working_set_bytes(config, B if kv else 0,
                                             prompt_len + new_tokens - 1, weight_bytes,
                                             kv_bytes)}
