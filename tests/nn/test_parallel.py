"""numpy_gpt.nn.parallel: a batch split over threads gives the loss and gradients of one pass."""

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn.parallel import ShardedStep, shard_weights

CFG = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16)


@pytest.mark.parametrize("threads", [2, 3])
def test_sharded_equals_one_pass_with_ignored_targets_and_dropout(threads):
    model = GPT(CFG.replace(dropout=0.2), dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, (5, 8))
    y = rng.integers(0, 17, (5, 8))
    y[0, :6] = -100  # uneven counted targets per shard: the weights must follow them
    y[3, 2] = -100
    loss, grads = ShardedStep(model, threads, always=True).forward_backward(
        x, y, dloss=0.5, label_smoothing=0.1, train=True, rng=np.random.default_rng(7))
    # the reference: one pass with the same masks (drawn first from the same seed)
    from numpy_gpt.nn.model_parts import make_dropout_masks

    masks = make_dropout_masks(model.config, 5, 8, np.random.default_rng(7))
    _, ref_loss, cache = model.forward(x, y, label_smoothing=0.1, train=True, dropout_masks=masks)
    ref = model.backward(cache, dloss=0.5)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-11, atol=1e-14, err_msg=k)
    assert (ShardedStep(model, threads, always=True).loss(x, y)
            == pytest.approx(model.forward(x, y)[1], rel=1e-13))


def test_shard_weights_skip_a_shard_with_nothing_to_count():
    y = np.array([[-100, -100], [1, 2], [3, -100]])
    parts = [slice(0, 1), slice(1, 2), slice(2, 3)]
    weights = shard_weights(y, parts)
    assert [(p.start, w) for p, w in weights] == [(1, pytest.approx(2 / 3)),
                                                 (2, pytest.approx(1 / 3))]


def test_more_threads_than_rows_and_single_thread():
    model = GPT(CFG, dtype="float64", seed=1)
    x = np.array([[1, 2, 3]])
    for threads in (1, 4):
        loss, _ = ShardedStep(model, threads).forward_backward(x, x)
        assert loss == pytest.approx(model.forward(x, x)[1], rel=1e-14)


def test_auto_sharding_follows_the_cost_rule():
    """Shard when per-row work >= 2 n_params (module docstring), not for a wide, short batch."""
    small = ShardedStep(GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
                                      n_embd=128)), threads=2)
    assert len(small.shards(12, 64)) == 2
    wide = ShardedStep(GPT(GPTConfig(vocab_size=5000, block_size=8, n_layer=1, n_head=2,
                                     n_embd=256)), threads=2)
    assert len(wide.shards(4, 8)) == 1  # 4*8*(22*256 + 8*8) = 182K < 2 * 1.6M parameters
    assert len(ShardedStep(wide.model, threads=2, always=True).shards(4, 8)) == 2


def test_single_threaded_blas_nests_and_restores_in_any_thread():
    """The BLAS thread count is process-wide: one thread inside (nested blocks too), the
    original restored after the outermost block; a block in another thread leaves the count
    as it found it too (threadpoolctl lets it limit only when no other live thread controls
    OpenBLAS, here the main thread, so inside it may see the original count)."""
    import threading

    threadpoolctl = pytest.importorskip("threadpoolctl")
    from numpy_gpt.nn.parallel import single_threaded_blas

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"}

    before, seen = blas_threads(), []

    def work():
        with single_threaded_blas():
            seen.append(blas_threads())
            with single_threaded_blas():
                seen.append(blas_threads())
            seen.append(blas_threads())

    work()
    assert blas_threads() == before
    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert seen[:3] == [{1}] * 3 and len(seen) == 6 and blas_threads() == before
