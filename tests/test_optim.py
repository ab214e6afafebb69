"""AdamW, clipping and the learning-rate schedule: known answers and a real fit."""

import math

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.optim import AdamW, clip_grad_norm, get_lr


def test_one_adamw_step_matches_hand_computation():
    """t=1: m = (1-b1) g, v = (1-b2) g^2, m_hat = g, v_hat = g^2, so the step is
    p <- p (1 - lr wd) - lr g / (|g| + eps): a decayed weight moves by ~lr*sign(g)."""
    w = np.array([[1.0, -2.0]])  # 2-D: decays
    b = np.array([0.5])  # 1-D: no decay
    opt = AdamW({"w": w, "b": b}, lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt.step({"w": np.array([[0.3, -4.0]]), "b": np.array([2.0])})
    expected_w = np.array([[1.0, -2.0]]) * (1 - 0.1 * 0.1) - 0.1 * np.array(
        [[0.3 / (0.3 + 1e-8), -4.0 / (4.0 + 1e-8)]])
    np.testing.assert_allclose(w, expected_w, rtol=1e-12)
    np.testing.assert_allclose(b, [0.5 - 0.1 * 2.0 / (2.0 + 1e-8)], rtol=1e-12)


def test_adamw_state_round_trip():
    p = {"w": np.ones((2, 2))}
    opt = AdamW(p, lr=0.01)
    opt.step({"w": np.full((2, 2), 0.5)})
    p2 = {"w": p["w"].copy()}
    opt2 = AdamW(p2, lr=0.01)
    opt2.load_state_dict(opt.state_dict())
    opt.step({"w": np.full((2, 2), -0.2)})
    opt2.step({"w": np.full((2, 2), -0.2)})
    np.testing.assert_array_equal(p["w"], p2["w"])
    with pytest.raises(ValueError, match="exp_avg.x"):
        AdamW({"x": np.ones(3)}).load_state_dict(opt.state_dict())


def test_clip_grad_norm():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}  # global norm 5
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-6)
    small = {"a": np.array([0.3])}
    clip_grad_norm(small, 1.0)
    assert small["a"][0] == 0.3  # under the limit: untouched


def test_lr_schedule_warmup_cosine_floor():
    kw = {"learning_rate": 1.0, "warmup_iters": 10, "lr_decay_iters": 110, "min_lr": 0.1}
    assert get_lr(0, **kw) == pytest.approx(1 / 11)
    assert get_lr(9, **kw) == pytest.approx(10 / 11)
    assert get_lr(10, **kw) == pytest.approx(1.0)
    assert get_lr(60, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert get_lr(110, **kw) == pytest.approx(0.1)
    assert get_lr(500, **kw) == 0.1


def test_adamw_drives_a_tiny_batch_to_near_zero_loss():
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, seed=0)
    opt = AdamW(model.params, lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 13, (2, 8))
    targets = np.roll(idx, -1, axis=1)
    first = None
    for _ in range(150):
        _, loss, cache = model.forward(idx, targets)
        first = first if first is not None else loss
        grads = model.backward(cache)
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
    assert first > 2.0 and loss < 0.05
