"""Generation from Llama-shaped numpy_gpt models: RoPE at the KV cache's position offset, a
cache of n_kv_head heads, batched rows with per-row positions (numpy twin; the torch twin's
Llama generation is tested beside torch_gpt; batched logits row by row: test_batch_generate)."""

from __future__ import annotations

import math

import fake_cupy
import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.generation.batch_generate import generate_batch
from numpy_gpt.generation.generate import Decoder, KVCache, forward_cached, generate
from numpy_gpt.generation.sampling import row_rngs
from numpy_gpt.nn.config import arch_fields

LLAMA = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=4, n_embd=16,
                  **arch_fields("llama", 4))  # 2 K/V heads for 4 query heads
VARIANTS = {
    "gqa_halves": LLAMA,
    "mqa_interleaved": LLAMA.replace(n_kv_head=1, rope_layout="interleaved"),
    "mha": LLAMA.replace(n_kv_head=4),
}


def decisive_model(config: GPTConfig, dtype: str = "float64", device: str = "cpu") -> GPT:
    """Logits with std ~3 (as test_batch_generate): sampled tokens are far from ties; larger
    attention weights so the scores (and RoPE's turns) matter."""
    model = GPT(config, dtype=dtype, seed=1, device=device)
    for name, p in model.params.items():
        if name.endswith("c_attn.weight"):
            p *= 8.0
    model.params["transformer.ln_f.weight"] *= 3.0 / (0.02 * math.sqrt(config.n_embd))
    return model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kv_cache_equals_full_recompute_past_block_size(variant):
    """Each next-token logit from the cache (positions offset by the cache's length, crops
    rebuilt) equals a full forward of the context, float64 to 1e-12 (DESIGN.md)."""
    model = decisive_model(VARIANTS[variant])
    S = model.config.block_size
    seq = np.random.default_rng(0).integers(0, 23, 3 * S).tolist()
    decoder = Decoder(model, seq[:2])
    for n in range(2, len(seq)):
        expected = model.forward(np.array([seq[:n][-S:]]))[0][0, -1]
        assert np.abs(decoder.logits - expected).max() <= 1e-12 * np.abs(expected).max(), n
        decoder.append(seq[n])


def test_kv_cache_holds_n_kv_head_heads_and_chunks_equal_one_forward():
    model = decisive_model(LLAMA)
    cache = KVCache(LLAMA, batch_size=2, dtype=np.float64)
    assert cache.k[0].shape == (2, 2, LLAMA.block_size, LLAMA.head_size)  # KV = 2, not 4
    idx = np.random.default_rng(1).integers(0, 23, (2, LLAMA.block_size))
    parts = [forward_cached(model, idx[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 12))]
    expected = model.forward(idx)[0]
    got = np.concatenate(parts, axis=1)
    assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batch_rows_equal_generate_alone(variant):
    """Right-padded rows of different lengths, each at its own positions (RoPE turns row b's
    new q and k by its own position), with crops: every row's tokens are generate()'s."""
    model = decisive_model(VARIANTS[variant])
    rng = np.random.default_rng(2)
    ps = [rng.integers(0, 23, n).tolist() for n in (1, 5, 12, 20)]
    settings = {"temperature": 0.9, "top_k": 6, "seed": 4}
    rows = generate_batch(model, ps, max_new_tokens=20, **settings)
    alone = [list(generate(model, p, max_new_tokens=20, rng=r, **settings))
             for p, r in zip(ps, row_rngs(4, len(ps)))]
    assert rows == alone


def test_greedy_with_and_without_cache_and_on_fake_cupy():
    model = decisive_model(LLAMA, "float32")
    prompt = [3, 1, 4, 1, 5]
    cached = list(generate(model, prompt, max_new_tokens=20, greedy=True))
    assert cached == list(generate(model, prompt, max_new_tokens=20, greedy=True,
                                   use_kv_cache=False))
    with fake_cupy.installed():
        dev = decisive_model(LLAMA, "float32", device="cuda")
        assert list(generate(dev, prompt, max_new_tokens=20, greedy=True)) == cached
        assert generate_batch(dev, [prompt, [2]], max_new_tokens=10, greedy=True)[0] == \
            cached[:10]
