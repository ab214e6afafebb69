"""The Llama blocks' layers (RMSNorm, RoPE, SwiGLU, grouped-query attention) by known answers.

Their finite-difference checks are numpy_gpt.nn.gradcheck's llama_layer_cases and
llama_variants, run by tests/nn/test_layers.py and tests/nn/test_model.py (and by
`python -m numpy_gpt gradcheck`); here: the properties that define each layer.
"""

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn.config import arch_fields
from numpy_gpt.nn.gradcheck import TOLERANCE, check_layer, check_model, llama_layer_cases
from numpy_gpt.nn.layers import (
    attention_backward,
    attention_forward,
    flash_attention_backward,
    flash_attention_forward,
    layernorm_forward,
    rmsnorm_forward,
    rope_backward,
    rope_forward,
    rope_tables,
    swiglu_backward,
    swiglu_forward,
    swiglu_recompute,
)
from numpy_gpt.nn.layers.attention import split_heads

RNG = np.random.default_rng(0)
F64 = np.dtype(np.float64)


def test_llama_layer_cases_pass_finite_differences():
    rng = np.random.default_rng(1)
    for name, case in llama_layer_cases(rng).items():
        for row in check_layer(name, case, rng):
            assert row.ok, (name, row.tensor, row.rel_error)


def test_rmsnorm_is_layernorm_of_zero_mean_rows_and_has_unit_rms():
    """Without a mean to remove, LayerNorm (no bias) and RMSNorm are the same function."""
    x = RNG.standard_normal((2, 3, 8))
    x -= x.mean(-1, keepdims=True)
    w = 1.0 + RNG.standard_normal(8)
    np.testing.assert_allclose(rmsnorm_forward(x, w, 1e-5)[0],
                               layernorm_forward(x, w, None, 1e-5)[0], rtol=1e-13)
    y, _ = rmsnorm_forward(RNG.standard_normal((2, 3, 8)) * 5 + 1, np.ones(8), 0.0)
    np.testing.assert_allclose(np.sqrt((y ** 2).mean(-1)), 1.0, rtol=1e-13)


def test_swiglu_known_values():
    """silu(g) u: silu(0) = 0, silu(1) = 1/(1 + e^-1), silu(-40) ~ -40 e^-40; no overflow."""
    g = np.array([0.0, 1.0, -40.0, -800.0, 800.0])
    u = np.array([3.0, 2.0, 1.0, 1.0, 0.5])
    out, cache = swiglu_forward(g, u)
    expected = [0.0, 2.0 / (1.0 + np.exp(-1.0)), -40.0 * np.exp(-40.0) / (1 + np.exp(-40.0)),
                -0.0, 400.0]
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=0)
    again, cache2 = swiglu_recompute(cache)
    assert np.array_equal(again, out)  # bit for bit
    dout = RNG.standard_normal(5)  # the backward reads the rebuild's sigmoid: the same result
    for a, b in zip(swiglu_backward(dout, cache2), swiglu_backward(dout, cache)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_rope_scores_depend_on_relative_position_only(layout):
    """q_m . k_n after RoPE is a function of m - n: shifting both positions changes nothing."""
    cos, sin = rope_tables(32, 6, 10000.0, F64)
    q, k = RNG.standard_normal(6), RNG.standard_normal(6)

    def score(m, n):
        qm = rope_forward(q, cos[m], sin[m], layout)[0]
        kn = rope_forward(k, cos[n], sin[n], layout)[0]
        return qm @ kn

    assert score(9, 4) == pytest.approx(score(25, 20), rel=1e-12)
    assert score(9, 4) != pytest.approx(score(9, 5), rel=1e-6)
    assert score(3, 3) == pytest.approx(q @ k, rel=1e-12)  # the same angle: no net turn


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_rope_backward_is_its_inverse_and_keeps_norms(layout):
    """A rotation is orthogonal: its backward (the turn by -angle) undoes the forward."""
    cos, sin = rope_tables(16, 8, 500.0, F64)
    x = RNG.standard_normal((2, 5, 3, 8))
    rows = (slice(7, 12), None)  # positions 7..11: a KV-cache offset
    y, cache = rope_forward(x, cos[rows], sin[rows], layout)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1),
                               rtol=1e-13)
    np.testing.assert_allclose(rope_backward(y, cache), x, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(rope_forward(x, cos[0], sin[0], layout)[0], x)  # position 0


def test_rope_layouts_differ_by_a_permutation_of_each_head():
    """interleaved(x) = halves(x permuted): the pairs (2i, 2i+1) moved to (i, i + hs/2)."""
    cos, sin = rope_tables(8, 6, 10000.0, F64)
    x = RNG.standard_normal((4, 6))
    perm = np.r_[0:6:2, 1:6:2]  # interleaved position of each halves slot
    inter = rope_forward(x, cos[3], sin[3], "interleaved")[0]
    halves = rope_forward(x[:, perm], cos[3], sin[3], "halves")[0]
    np.testing.assert_allclose(inter[:, perm], halves, rtol=1e-14)
    assert not np.allclose(inter, rope_forward(x, cos[3], sin[3], "halves")[0])


def repeat_kv(qkv, NH, KV):
    """The readable GQA: K/V heads copied to every query head of their group (llama's
    repeat_kv), as a plain multi-head qkv (B, T, 3 NH hs)."""
    q, k, v = split_heads(qkv, NH, KV)
    G = NH // KV
    B, _, T, hs = q.shape
    heads = [np.repeat(t, G, axis=1) if t is not q else t for t in (q, k, v)]
    return np.concatenate([h.transpose(0, 2, 1, 3).reshape(B, T, NH * hs) for h in heads], -1)


@pytest.mark.parametrize("KV", [1, 2, 4])
@pytest.mark.parametrize("tiled", [False, True])
def test_gqa_equals_attention_on_repeated_kv(KV, tiled):
    """Forward: GQA is multi-head attention with K/V repeated. Backward: a shared K/V head's
    gradient is the sum of its copies' gradients (the repeat's backward)."""
    NH, hs, B, T = 4, 3, 2, 7
    qkv = RNG.standard_normal((B, T, (NH + 2 * KV) * hs))
    dout = RNG.standard_normal((B, T, NH * hs))

    def run(x, kv):
        if tiled:
            y, cache = flash_attention_forward(x, NH, tile=3, n_kv_head=kv)
            return y, flash_attention_backward(dout, cache)
        y, cache = attention_forward(x, NH, n_kv_head=kv)
        return y, attention_backward(dout, cache)

    y, dqkv = run(qkv, KV)
    y_rep, dqkv_rep = run(repeat_kv(qkv, NH, KV), NH)
    np.testing.assert_allclose(y, y_rep, rtol=1e-12, atol=1e-14)
    dq, dk, dv = split_heads(dqkv, NH, KV)
    dq_rep, dk_rep, dv_rep = split_heads(dqkv_rep, NH)
    G = NH // KV
    np.testing.assert_allclose(dq, dq_rep, rtol=1e-12, atol=1e-14)
    for got, copies in ((dk, dk_rep), (dv, dv_rep)):
        summed = copies.reshape(B, KV, G, T, hs).sum(axis=2)
        np.testing.assert_allclose(got, summed, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("KV", [1, 2])
def test_tiled_gqa_equals_full(KV):
    """The two kernels are one function: outputs and gradients at T = 37 (tiles of 8, short
    last tile), float64."""
    NH, hs, B, T = 4, 4, 2, 37
    qkv = RNG.standard_normal((B, T, (NH + 2 * KV) * hs))
    dout = RNG.standard_normal((B, T, NH * hs))
    y_full, c_full = attention_forward(qkv, NH, n_kv_head=KV)
    y_tiled, c_tiled = flash_attention_forward(qkv, NH, tile=8, n_kv_head=KV)
    np.testing.assert_allclose(y_tiled, y_full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(flash_attention_backward(dout, c_tiled),
                               attention_backward(dout, c_full), rtol=1e-11, atol=1e-12)


LLAMA = GPTConfig(vocab_size=19, block_size=16, n_layer=2, n_head=4, n_embd=16,
                  **arch_fields("llama", 4))


def test_llama_model_tiled_equals_full_and_has_the_canonical_names():
    model = GPT(LLAMA, dtype="float64", seed=3)
    assert "transformer.wpe.weight" not in model.params
    assert not any(k.endswith(".bias") for k in model.params)
    assert model.params["transformer.h.0.attn.c_attn.weight"].shape == ((4 + 2 * 2) * 4, 16)
    idx = RNG.integers(0, 19, (2, 13))
    full = model.forward(idx, idx, attention="full")
    tiled = model.forward(idx, idx, attention="tiled")
    np.testing.assert_allclose(tiled[0], full[0], rtol=1e-12, atol=1e-13)
    g_full, g_tiled = model.backward(full[2]), model.backward(tiled[2])
    assert list(g_full) == list(model.params)
    for k in g_full:
        np.testing.assert_allclose(g_tiled[k], g_full[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_llama_model_is_causal_and_position_aware():
    """RoPE is the only position signal: the last output for [3, 7, 5] and [7, 3, 5] would be
    equal without it in one block (attention sums over the same keys, and a second block would
    see the first's causal asymmetry); future tokens change no past logit."""
    model = GPT(LLAMA.replace(n_layer=1), dtype="float64", seed=4)
    logits = model.forward(np.array([[3, 7, 5, 1]]))[0]
    swapped = model.forward(np.array([[7, 3, 5, 1]]))[0]
    assert not np.allclose(logits[0, 2], swapped[0, 2], rtol=1e-6)
    no_rope = GPT.from_params(model.config.replace(position="learned"),
                              {**model.params, "transformer.wpe.weight": np.zeros((16, 16))},
                              dtype="float64")
    np.testing.assert_allclose(no_rope.forward(np.array([[3, 7, 5]]))[0][0, 2],
                               no_rope.forward(np.array([[7, 3, 5]]))[0][0, 2], rtol=1e-12)
    changed = model.forward(np.array([[3, 7, 5, 2]]))[0]
    np.testing.assert_array_equal(changed[0, :3], logits[0, :3])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_llama_save_load_round_trip(tmp_path, dtype):
    model = GPT(LLAMA.replace(rope_layout="interleaved", rope_theta=500.0), dtype=dtype, seed=5)
    model.save(tmp_path / "ckpt")
    loaded = GPT.load(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.dtype == model.dtype
    idx = RNG.integers(0, 19, (1, 9))
    np.testing.assert_array_equal(loaded.forward(idx)[0], model.forward(idx)[0])


def test_gqa_gradcheck_with_odd_shapes():
    """One more shape family: 6 query heads in 3 groups of 2, T = 7, head size 4."""
    cfg = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=6, n_embd=24, n_kv_head=3,
                    norm="rmsnorm", position="rope", mlp="swiglu", ffn_hidden=5, bias=False)
    rows = check_model(cfg, T=7, B=1)
    assert all(r.ok for r in rows), max(rows, key=lambda r: r.rel_error)
    assert max(r.rel_error for r in rows) <= TOLERANCE
