"""Every layer's hand-written backward against central finite differences, in float64.

The cases (shapes, edge variants) live in numpy_gpt.nn.gradcheck, which the
`python -m numpy_gpt gradcheck` command runs too. Known-answer checks of single layers follow.
"""

import math

import numpy as np
import pytest

from numpy_gpt.nn.gradcheck import TOLERANCE, check_layer, layer_cases
from numpy_gpt.nn.layers import (
    attention_forward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    gelu_exact_backward,
    gelu_exact_forward,
    gelu_recompute,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_forward,
)

CASES = layer_cases(np.random.default_rng(0))


@pytest.mark.parametrize("name", list(CASES))
def test_layer_gradients_match_finite_differences(name):
    rows = check_layer(name, CASES[name], np.random.default_rng(1))
    for r in rows:
        assert r.rel_error <= TOLERANCE, f"{name}.{r.tensor}: {r.rel_error:.2e}"


def test_embedding_scatter_add_accumulates_repeated_ids():
    """idx = [[2, 2, 0]]: row 2 of dwte receives dout[0,0] + dout[0,1]; row 1 gets nothing."""
    wte, wpe = np.zeros((3, 2)), np.zeros((4, 2))
    _, cache = embedding_forward(np.array([[2, 2, 0]]), wte, wpe)
    dout = np.array([[[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]]])
    dwte, dwpe = embedding_backward(dout, cache)
    np.testing.assert_array_equal(dwte, [[100, 200], [0, 0], [11, 22]])
    np.testing.assert_array_equal(dwpe, [[1, 2], [10, 20], [100, 200], [0, 0]])


def test_layernorm_output_is_normalized():
    x = np.random.default_rng(0).standard_normal((2, 3, 16)) * 5 + 3
    out, _ = layernorm_forward(x, np.ones(16), np.zeros(16), 1e-5)
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-5)


def test_gelu_known_values():
    """GELU(0) = 0, GELU(1) = Phi(1) = 0.841344746..., tanh form within 1e-3 of exact."""
    x = np.array([0.0, 1.0, -1.0])
    exact, _ = gelu_exact_forward(x)
    np.testing.assert_allclose(exact, [0.0, 0.8413447460685429, -0.15865525393145707], rtol=1e-14)
    approx, _ = gelu_tanh_forward(x)
    np.testing.assert_allclose(approx, exact, atol=1e-3)


def test_attention_is_causal_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((2, 5, 3 * 8))
    out, cache = attention_forward(qkv, n_head=2)
    np.testing.assert_allclose(cache.att.sum(-1), 1.0, rtol=1e-14)
    assert np.all(np.triu(cache.att[0, 0], k=1) == 0.0)  # no weight on future positions
    # position 0 attends only to itself: its output is its own value vector
    np.testing.assert_allclose(out[:, 0], qkv[:, 0, 16:], rtol=1e-14)  # v is the last third


def test_cross_entropy_known_answers():
    """Uniform logits over V classes: loss = ln V; label smoothing leaves it ln V too."""
    logits = np.zeros((1, 2, 5))
    targets = np.array([[1, -100]])
    loss, _ = cross_entropy_forward(logits, targets)
    assert loss == pytest.approx(math.log(5), rel=1e-14)
    loss_s, _ = cross_entropy_forward(logits, targets, label_smoothing=0.3)
    assert loss_s == pytest.approx(math.log(5), rel=1e-14)
    all_ignored, _ = cross_entropy_forward(logits, np.full((1, 2), -100))
    assert math.isnan(all_ignored)  # as PyTorch: mean over zero targets


def test_float32_stays_float32():
    """No silent upcast: Python-float constants keep float32 arrays float32."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    for fn in (gelu_tanh_forward, gelu_exact_forward):
        assert fn(x)[0].dtype == np.float32
    assert layernorm_forward(x, np.ones(8, np.float32), None, 1e-5)[0].dtype == np.float32
    qkv = np.random.default_rng(0).standard_normal((2, 3, 24)).astype(np.float32)
    assert attention_forward(qkv, 2)[0].dtype == np.float32


def test_float32_erf_is_accurate_to_float32_resolution():
    """A&S 7.1.26 in float32: |erf error| < 1e-6 everywhere (the formula's own bound is 1.5e-7;
    float32 rounding adds a few ulps), odd, and saturating at +-1."""
    from numpy_gpt.nn.layers.gelu import _erf_float32

    z = np.linspace(-6, 6, 24001)
    exact = np.array([math.erf(v) for v in z])
    approx = _erf_float32(z.astype(np.float32))
    assert approx.dtype == np.float32
    assert np.abs(approx - exact).max() < 1e-6
    np.testing.assert_array_equal(approx, -_erf_float32(-z.astype(np.float32)))


@pytest.mark.parametrize("variant", ["tanh", "exact"])
def test_gelu_recompute_rebuilds_the_output_bit_for_bit(variant):
    """The model drops the GELU output after mlp.c_proj's forward and rebuilds it in backward:
    the rebuilt output must be the forward's exactly, and the backward (which then reuses
    tanh(u) from the rebuild) must equal the plain backward exactly."""
    rng = np.random.default_rng(0)
    x = 2 * rng.standard_normal((2, 3, 16)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    forward, backward = ((gelu_tanh_forward, gelu_tanh_backward) if variant == "tanh"
                         else (gelu_exact_forward, gelu_exact_backward))
    out, cache = forward(x)
    again, cache2 = gelu_recompute(cache)
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(backward(dout, cache2), backward(dout, cache))
