"""numpy_gpt.GPT: whole-model gradients, known answers, bad input, checkpoints."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn.checkpoint import CheckpointError
from numpy_gpt.nn.gradcheck import TOLERANCE, check_model, model_variants

TINY = GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8)


@pytest.mark.parametrize("variant", list(model_variants()))
def test_model_gradients_match_finite_differences(variant):
    config, kwargs = model_variants()[variant]
    for r in check_model(config, case=variant, **kwargs):
        assert r.rel_error <= TOLERANCE, f"{variant} {r.tensor}: {r.rel_error:.2e}"


@settings(max_examples=8, deadline=None, derandomize=True)  # reproducible in CI
@given(
    n_layer=st.integers(1, 2),
    n_head=st.sampled_from([1, 2]),
    # C >= 3: LayerNorm over 2 features outputs +-1 whatever its input, so its true gradient
    # is ~eps/var and a finite difference would only measure rounding noise
    head_size=st.sampled_from([3, 4]),
    vocab=st.integers(2, 13),
    B=st.integers(1, 2),
    T=st.integers(1, 4),
    bias=st.booleans(),
    tie=st.booleans(),
    gelu=st.sampled_from(["tanh", "exact"]),
    smoothing=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_random_configs_gradcheck(n_layer, n_head, head_size, vocab, B, T, bias, tie, gelu,
                                  smoothing, seed):
    config = GPTConfig(vocab_size=vocab, block_size=4, n_layer=n_layer, n_head=n_head,
                       n_embd=n_head * head_size, bias=bias, tie_weights=tie, gelu=gelu)
    rows = check_model(config, B=B, T=T, label_smoothing=smoothing, seed=seed)
    worst = max(rows, key=lambda r: r.rel_error)
    assert worst.rel_error <= TOLERANCE, f"{worst.tensor}: {worst.rel_error:.2e}"


def test_loss_at_init_is_ln_vocab():
    """Small init makes the logits nearly uniform: loss ~ ln V (here ln 65 = 4.174)."""
    config = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 65, (4, 16)), rng.integers(0, 65, (4, 16))
    _, loss, _ = model.forward(idx, targets)
    assert loss == pytest.approx(math.log(65), abs=0.05)


def test_causality_future_tokens_do_not_change_past_logits():
    model = GPT(TINY, dtype="float64", seed=1)
    idx = np.array([[1, 2, 3, 4, 5, 6]])
    changed = idx.copy()
    changed[0, 4:] = [9, 0]
    a, _, _ = model.forward(idx)
    b, _, _ = model.forward(changed)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_shorter_sequences_and_dtypes():
    model32 = GPT(TINY, seed=3)
    model64 = GPT(TINY, dtype="float64", seed=3)
    idx = np.array([[3, 1, 4]])
    logits32, loss32, cache = model32.forward(idx, idx)
    grads = model32.backward(cache)
    assert logits32.shape == (1, 3, 11) and logits32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert list(grads) == list(model32.params)
    logits64, loss64, _ = model64.forward(idx, idx)
    np.testing.assert_allclose(logits32, logits64, atol=1e-5)  # same seed -> same model
    assert loss32 == pytest.approx(loss64, abs=1e-5)


def test_eval_mode_ignores_dropout_and_train_mode_is_seeded():
    model = GPT(TINY.replace(dropout=0.5), dtype="float64", seed=0)
    idx = np.array([[1, 2, 3, 4]])
    a, _, _ = model.forward(idx)
    b, _, _ = model.forward(idx)
    np.testing.assert_array_equal(a, b)
    t1, _, _ = model.forward(idx, train=True, rng=np.random.default_rng(7))
    t2, _, _ = model.forward(idx, train=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(t1, t2)
    assert not np.allclose(t1, a)
    with pytest.raises(ValueError, match="rng or dropout_masks"):
        model.forward(idx, train=True)


@pytest.mark.parametrize(
    "idx, targets, match",
    [
        ([[1, 11]], None, r"token id 11 outside \[0, 11\)"),
        ([[-1, 2]], None, "token id -1"),
        ([[1, 2, 3, 4, 5, 6, 7]], None, "block_size is 6"),
        ([[1.0, 2.0]], None, "integer token ids"),
        ([1, 2], None, r"shape \(B, T\)"),
        ([[1, 2]], [[1, 2, 3]], "has shape"),
        ([[1, 2]], [[1, -5]], "use -100 to ignore"),
        ([[1, 2]], [[1.5, 2.0]], "integer token ids"),
    ],
)
def test_bad_input_gives_one_clear_error(idx, targets, match):
    model = GPT(TINY, seed=0)
    with pytest.raises(ValueError, match=match):
        model.forward(np.array(idx), None if targets is None else np.array(targets))


def test_backward_needs_targets():
    model = GPT(TINY, seed=0)
    _, loss, cache = model.forward(np.array([[1, 2]]))
    assert loss is None
    with pytest.raises(ValueError, match="targets"):
        model.backward(cache)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = GPT(TINY.replace(tie_weights=False, gelu="exact"), dtype="float64", seed=5)
    model.save(tmp_path / "ckpt")
    loaded = GPT.load(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.dtype == np.float64
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    as32 = GPT.load(tmp_path / "ckpt", dtype="float32")
    assert as32.params["lm_head.weight"].dtype == np.float32


def test_save_replaces_atomically_and_load_reports_damage(tmp_path):
    model = GPT(TINY, seed=0)
    path = tmp_path / "ckpt"
    model.save(path)
    model.params["transformer.wte.weight"][0, 0] = 42.0
    model.save(path)  # overwrite in place: the new folder replaces the old one
    assert GPT.load(path).params["transformer.wte.weight"][0, 0] == 42.0
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folders left behind
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        GPT.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        GPT.load(tmp_path / "missing")


def test_load_rejects_mismatched_shapes(tmp_path):
    GPT(TINY, seed=0).save(tmp_path / "a")
    bigger = GPT(TINY.replace(vocab_size=12), seed=0)
    # a config.json that says V=12 next to weights for V=11
    (tmp_path / "a" / "config.json").write_text(
        (tmp_path / "a" / "config.json").read_text().replace('"vocab_size": 11',
                                                             '"vocab_size": 12'))
    with pytest.raises(CheckpointError, match="shape"):
        GPT.load(tmp_path / "a")
    assert bigger.params["transformer.wte.weight"].shape == (12, 8)


def test_backward_reuses_or_releases_the_cache():
    """backward leaves the cache intact (call it twice, same grads) unless release=True, which
    lets each block's activations go as soon as they are used (and gives the same grads)."""
    model = GPT(TINY.replace(dropout=0.1), dtype="float64", seed=0)
    idx = np.random.default_rng(0).integers(0, 11, (2, 6))
    _, _, cache = model.forward(idx, idx, train=True, rng=np.random.default_rng(1))
    first, second = model.backward(cache), model.backward(cache)
    released = model.backward(cache, release=True)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
        np.testing.assert_array_equal(first[k], released[k])
    assert all(block is None for block in cache.blocks)
