"""AdamW, clipping and the learning-rate schedule: known answers and a real fit."""

import math

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn import optim
from numpy_gpt.nn.optim import (
    AdamW,
    clip_coef,
    clip_grad_norm,
    get_lr,
    get_lr_restarts,
    grad_norm,
)


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


def reference_adamw_step(p, g, m, v, t, lr, b1, b2, eps, wd):
    """torch.optim.AdamW's single-tensor step, on whole float32 tensors (no slicing)."""
    if p.ndim >= 2:
        p *= np.float32(1 - lr * wd)
    m *= np.float32(b1)
    m += g * np.float32(1 - b1)
    v *= np.float32(b2)
    v += (g * g) * np.float32(1 - b2)
    denom = np.sqrt(v) / np.float32(math.sqrt(1 - b2**t)) + np.float32(eps)
    p -= (m / denom) * np.float32(lr / (1 - b1**t))


@pytest.mark.parametrize("chunk", [7, 64, optim.CHUNK])
def test_sliced_update_is_bit_identical_to_whole_tensor_update(chunk, monkeypatch):
    """AdamW updates cache-sized slices; slice edges (here inside rows, and a last partial
    slice) must not change a single bit against the whole-tensor arithmetic."""
    monkeypatch.setattr(optim, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    shapes = {"w": (13, 17), "b": (17,), "e": (5, 3)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    ref = {k: (p.copy(), np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    opt = AdamW(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, threads=2)
    for t in range(1, 4):
        grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        for k, (p, m, v) in ref.items():
            reference_adamw_step(p, grads[k].copy(), m, v, t, 0.01, 0.9, 0.95, 1e-8, 0.1)
        opt.step(grads)
        for k, (p, m, v) in ref.items():
            np.testing.assert_array_equal(params[k], p)
            np.testing.assert_array_equal(opt.m[k], m)
            np.testing.assert_array_equal(opt.v[k], v)


def test_grad_scale_equals_clipping_then_step():
    """step(grad_scale=clip_coef(norm)) is clip_grad_norm + step, bit for bit, and leaves
    the gradients scaled as clipping would."""
    rng = np.random.default_rng(1)
    shapes = {"w": (40, 30), "b": (30,)}
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = {k: 3 * rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    a = {k: p.copy() for k, p in init.items()}
    b = {k: p.copy() for k, p in init.items()}
    ga = {k: g.copy() for k, g in grads.items()}
    gb = {k: g.copy() for k, g in grads.items()}
    norm_a = clip_grad_norm(ga, 1.0)
    AdamW(a, lr=0.01).step(ga)
    norm_b = grad_norm(gb)
    coef = clip_coef(norm_b, 1.0)
    assert norm_a == norm_b and coef < 1.0
    AdamW(b, lr=0.01).step(gb, grad_scale=coef)
    for k in shapes:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(ga[k], gb[k])
    assert clip_coef(0.5, 1.0) == 1.0  # under the limit: no scaling


def test_adamw_rejects_non_contiguous_parameters():
    with pytest.raises(ValueError, match="C-contiguous parameters; w is not"):
        AdamW({"w": np.ones((4, 3)).T})


def test_lr_schedule_warmup_cosine_floor():
    kw = {"learning_rate": 1.0, "warmup_iters": 10, "lr_decay_iters": 110, "min_lr": 0.1}
    assert get_lr(0, **kw) == pytest.approx(1 / 11)
    assert get_lr(9, **kw) == pytest.approx(10 / 11)
    assert get_lr(10, **kw) == pytest.approx(1.0)
    assert get_lr(60, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert get_lr(110, **kw) == pytest.approx(0.1)
    assert get_lr(500, **kw) == 0.1


def test_warm_restarts_known_answers():
    """warmup 2, then cycles of 4, 8, 16 steps (period 4, mult 2) from 1.0 towards 0.1:
    it 2 starts the first cycle (lr 1), it 4 is half way down it (cos(pi/2) = 0: 0.55),
    it 6 restarts at 1.0, it 10 is half way down the 8-step cycle, it 14 restarts again."""
    kw = {"learning_rate": 1.0, "warmup_iters": 2, "restart_period": 4, "restart_mult": 2,
          "min_lr": 0.1}
    assert get_lr_restarts(0, **kw) == get_lr(0, learning_rate=1.0, warmup_iters=2,
                                              lr_decay_iters=10, min_lr=0.1)  # same warmup
    assert [get_lr_restarts(it, **kw) for it in (2, 6, 14, 30)] == [1.0] * 4
    assert get_lr_restarts(4, **kw) == pytest.approx(0.55)
    assert get_lr_restarts(10, **kw) == pytest.approx(0.55)
    assert get_lr_restarts(5, **kw) > 0.1 and get_lr_restarts(13, **kw) > 0.1
    with pytest.raises(ValueError, match="restart period and multiplier must be >= 1"):
        get_lr_restarts(3, **{**kw, "restart_period": 0})


@pytest.mark.parametrize("period, mult", [(5, 1), (3, 2), (1, 2), (4, 3)])
def test_warm_restarts_match_torch_at_every_step(period, mult):
    """After the warmup, every rate equals torch's CosineAnnealingWarmRestarts stepped once
    per iteration, exactly (same integer cycle bookkeeping, same expression)."""
    torch = pytest.importorskip("torch")
    warmup, peak, floor = 7, 3e-3, 2e-4
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period, T_mult=mult,
                                                                 eta_min=floor)
    for it in range(warmup, warmup + 300):
        ours = get_lr_restarts(it, learning_rate=peak, warmup_iters=warmup,
                               restart_period=period, restart_mult=mult, min_lr=floor)
        assert ours == opt.param_groups[0]["lr"], it
        opt.step()
        sched.step()


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
