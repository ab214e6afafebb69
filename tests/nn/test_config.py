"""GPTConfig validation: every impossible config fails with one error naming its field."""

import pytest

from numpy_gpt.nn.config import ConfigError, GPTConfig, dropout_mask_shapes, param_shapes


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"n_embd": 10, "n_head": 4}, "n_embd"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"block_size": -1}, "block_size"),
        ({"n_layer": 0}, "n_layer"),
        ({"n_head": 0}, "n_head"),
        ({"n_embd": 2.5}, "n_embd"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"gelu": "relu"}, "gelu"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"bias": "yes"}, "bias"),
    ],
)
def test_impossible_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**changes)


def test_from_dict_round_trip_and_unknown_key():
    cfg = GPTConfig(vocab_size=50, n_layer=2, dropout=0.1, gelu="exact", tie_weights=False)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="n_embed"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_embed": 3})


def test_param_shapes_follow_the_canonical_names():
    cfg = GPTConfig(vocab_size=7, block_size=5, n_layer=2, n_head=2, n_embd=4)
    shapes = param_shapes(cfg)
    assert shapes["transformer.wte.weight"] == (7, 4)
    assert shapes["transformer.h.1.attn.c_attn.weight"] == (12, 4)
    assert shapes["transformer.h.0.mlp.c_proj.weight"] == (4, 16)
    assert "lm_head.weight" not in shapes  # tied by default
    assert len(shapes) == 2 + 2 * 12 + 2
    untied = param_shapes(cfg.replace(tie_weights=False, bias=False))
    assert untied["lm_head.weight"] == (7, 4)
    assert not any(k.endswith(".bias") for k in untied)


def test_dropout_sites():
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=8)
    shapes = dropout_mask_shapes(cfg, B=3, T=5)
    assert shapes["transformer.drop"] == (3, 5, 8)
    assert shapes["transformer.h.1.attn.attn_dropout"] == (3, 4, 5, 5)
    assert len(shapes) == 1 + 3 * 2
