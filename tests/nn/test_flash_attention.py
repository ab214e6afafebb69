"""The tiled attention (numpy_gpt/nn/layers/flash_attention.py) against the full one,
and its config.

Finite differences of the tiled layer run with every other layer's in test_layers.py (the
cases attention_tiled* of numpy_gpt.nn.gradcheck: odd T, T not a multiple of the tile, T=1,
tile > T); the torch SDPA rows are parity cases (layer/attention-tiled-*). Here: equality
with attention.py in float64 (<= 1e-12, DESIGN.md's logits bound), a hypothesis sweep over
tile sizes, the whole model on either kernel, and the config field.
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn.config import (
    AUTO_TILE_LONG,
    AUTO_TILE_SHORT,
    AUTO_TILE_SHORT_MAX_T,
    AUTO_TILED_ABOVE_T,
    ConfigError,
)
from numpy_gpt.nn.layers import (
    FlashAttentionCache,
    attention_backward,
    attention_forward,
    flash_attention_backward,
    flash_attention_forward,
)
from numpy_gpt.nn.layers.attention import AttentionCache

EQUAL = 1e-12


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def both(B: int, T: int, C: int, NH: int, tile: int, seed: int = 0
         ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((out, dqkv) of attention.py, (out, dqkv) of the tiled kernel) on the same inputs."""
    rng = np.random.default_rng(seed)
    qkv = 2.0 * rng.standard_normal((B, T, 3 * C))  # scores of a few units: a peaked softmax
    dout = rng.standard_normal((B, T, C))
    out, cache = attention_forward(qkv, NH)
    t_out, t_cache = flash_attention_forward(qkv, NH, tile)
    return ((out, attention_backward(dout, cache)),
            (t_out, flash_attention_backward(dout, t_cache)))


@pytest.mark.parametrize("B,T,C,NH,tile", [
    (2, 7, 8, 2, 3),  # odd T, not a multiple of the tile
    (1, 1, 8, 2, 4),  # T = 1
    (2, 3, 8, 2, 16),  # tile > T: one tile, masked on its diagonal
    (2, 64, 16, 4, 16),  # T a multiple of the tile
    (1, 100, 24, 3, 32),  # 4 tiles, the last one short
])
def test_tiled_equals_full_in_float64(B, T, C, NH, tile):
    (out, dqkv), (t_out, t_dqkv) = both(B, T, C, NH, tile)
    assert rel(t_out, out) <= EQUAL
    assert rel(t_dqkv, dqkv) <= EQUAL


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 40), tile=st.integers(1, 48), B=st.integers(1, 2),
       NH=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16))
def test_tiled_equals_full_for_any_tile_size(T, tile, B, NH, seed):
    (out, dqkv), (t_out, t_dqkv) = both(B, T, 4 * NH, NH, tile, seed)
    assert rel(t_out, out) <= EQUAL
    assert rel(t_dqkv, dqkv) <= EQUAL


@pytest.mark.parametrize("strip", [1, 4, 8, 13, 1000])
def test_backward_strips_of_any_length_give_the_same_gradients(monkeypatch, strip):
    """The backward walks the rows below each key tile in strips of whole tiles, about
    STRIP_ROWS rows (256 by default, more than the hypothesis sweep's T): asked for fewer rows
    than a tile (4), one tile, two, 13 (3 tiles) and more than T=29 (a short last tile)."""
    from numpy_gpt.nn.layers import flash_attention

    monkeypatch.setattr(flash_attention, "STRIP_ROWS", strip)
    (out, dqkv), (t_out, t_dqkv) = both(2, 29, 8, 2, 4, seed=strip)
    assert rel(t_dqkv, dqkv) <= EQUAL


def test_tiled_cache_is_linear_in_T():
    """No (T, T) array: the cache holds q, k, v, out (B,NH,T,hs) and lse (B,NH,T) only."""
    B, T, C, NH = 1, 96, 8, 2
    qkv = np.random.default_rng(0).standard_normal((B, T, 3 * C))
    _, cache = flash_attention_forward(qkv, NH, 16)
    sizes = [a.size for a in cache if isinstance(a, np.ndarray)]
    assert max(sizes) == B * T * C and sum(sizes) == 4 * B * T * C + B * NH * T


def test_float32_stays_float32():
    qkv = np.random.default_rng(0).standard_normal((2, 9, 24)).astype(np.float32)
    out, cache = flash_attention_forward(qkv, 2, 4)
    assert out.dtype == np.float32 and cache.lse.dtype == np.float32
    assert flash_attention_backward(np.ones_like(out), cache).dtype == np.float32


def _model_pair(attention: str, T: int, tile: int = 5):
    base = GPTConfig(vocab_size=13, block_size=T, n_layer=2, n_head=2, n_embd=8)
    return (GPT(base.replace(attention="full"), dtype="float64", seed=3),
            GPT(base.replace(attention=attention, attention_tile=tile), dtype="float64", seed=3))


def test_model_on_the_tiled_kernel_equals_the_full_one():
    full, tiled = _model_pair("tiled", T=11)
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 13, (2, 11)), rng.integers(0, 13, (2, 11))
    logits, loss, cache = full.forward(idx, targets)
    t_logits, t_loss, t_cache = tiled.forward(idx, targets)
    assert isinstance(t_cache.blocks[0].attn, FlashAttentionCache)
    assert rel(t_logits, logits) <= EQUAL and abs(t_loss - loss) <= EQUAL * abs(loss)
    grads, t_grads = full.backward(cache), tiled.backward(t_cache)
    assert t_grads.keys() == grads.keys()
    for k in grads:
        assert rel(t_grads[k], grads[k]) <= 1e-10, k  # DESIGN.md's gradient bound


def test_auto_tiles_only_long_sequences_without_dropout():
    cfg = GPTConfig(block_size=2 * AUTO_TILED_ABOVE_T)
    assert not cfg.tiled_attention(AUTO_TILED_ABOVE_T)
    assert cfg.tiled_attention(AUTO_TILED_ABOVE_T + 1)
    assert not cfg.tiled_attention(AUTO_TILED_ABOVE_T + 1, p=0.1)  # dropout: the full path
    assert cfg.replace(attention="tiled").tiled_attention(1)
    assert not cfg.replace(attention="full").tiled_attention(10**6)
    assert cfg.attention_tile_for(AUTO_TILE_SHORT_MAX_T) == AUTO_TILE_SHORT
    assert cfg.attention_tile_for(AUTO_TILE_SHORT_MAX_T + 1) == AUTO_TILE_LONG
    assert cfg.replace(attention_tile=7).attention_tile_for(10**6) == 7
    model = GPT(GPTConfig(vocab_size=5, block_size=AUTO_TILED_ABOVE_T + 1, n_layer=1,
                          n_head=1, n_embd=4), dtype="float64")
    short = model.forward(np.zeros((1, 4), dtype=np.int64))[2]
    long = model.forward(np.zeros((1, AUTO_TILED_ABOVE_T + 1), dtype=np.int64))[2]
    assert isinstance(short.blocks[0].attn, AttentionCache)
    assert isinstance(long.blocks[0].attn, FlashAttentionCache)


@pytest.mark.parametrize("changes,field", [
    ({"attention": "flash"}, "attention"),
    ({"attention_tile": 0}, "attention_tile"),
    ({"attention_tile": 2.5}, "attention_tile"),
    ({"attention": "tiled", "dropout": 0.1}, "dropout"),
])
def test_config_refuses_bad_attention_settings(changes, field):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**changes)


def test_attention_fields_round_trip_and_old_checkpoints_load_as_default(tmp_path):
    cfg = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=4,
                    attention="tiled", attention_tile=3)
    GPT(cfg, dtype="float64").save(tmp_path / "new")
    assert GPT.load(tmp_path / "new").config == cfg
    # a checkpoint written before the fields existed: config.json without them
    GPT(cfg.replace(attention="auto", attention_tile=None)).save(tmp_path / "old")
    meta_path = tmp_path / "old" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["model"]["attention"], meta["model"]["attention_tile"]
    meta_path.write_text(json.dumps(meta))
    loaded = GPT.load(tmp_path / "old").config
    assert (loaded.attention, loaded.attention_tile) == ("auto", None)


def test_attention_override_and_maps_of_a_long_prompt():
    """forward(attention="full") keeps P even where "auto" tiles; attention maps need it."""
    from numpy_gpt.nn.attention_maps import attention_maps

    T = AUTO_TILED_ABOVE_T + 3
    model = GPT(GPTConfig(vocab_size=5, block_size=T, n_layer=1, n_head=2, n_embd=4),
                dtype="float64")
    ids = np.arange(T) % 5
    assert isinstance(model.forward(ids[None])[2].blocks[0].attn, FlashAttentionCache)
    maps = attention_maps(model, ids)
    assert maps.shape == (1, 2, T, T)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-12)
    with pytest.raises(ConfigError, match="dropout"):
        GPT(GPTConfig(dropout=0.1)).forward(np.zeros((1, 2), dtype=np.int64), attention="tiled")
