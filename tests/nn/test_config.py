"""GPTConfig validation: every impossible config fails with one error naming its field."""

import pytest

from numpy_gpt.nn.config import (
    ConfigError,
    GPTConfig,
    arch_fields,
    dropout_mask_shapes,
    param_shapes,
)


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


# --- the Llama family's fields (issue 24) ---

@pytest.mark.parametrize(
    "changes, field",
    [
        ({"n_head": 4, "n_kv_head": 3}, "n_kv_head"),
        ({"n_kv_head": 0}, "n_kv_head"),
        ({"n_embd": 12, "n_head": 4, "position": "rope"}, "position"),  # head size 3
        ({"position": "rope", "rope_theta": 0.0}, "rope_theta"),
        ({"rope_theta": -1.0}, "rope_theta"),
        ({"mlp": "swiglu", "ffn_hidden": 0}, "ffn_hidden"),
        ({"ffn_hidden": 2.5}, "ffn_hidden"),
        ({"norm": "batchnorm"}, "norm"),
        ({"position": "alibi"}, "position"),
        ({"rope_layout": "complex"}, "rope_layout"),
        ({"mlp": "geglu"}, "mlp"),
    ],
)
def test_impossible_llama_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        GPTConfig(**changes)


def test_old_checkpoint_config_loads_as_gpt2():
    """A config.json written before the Llama fields existed is GPT-2."""
    old = {k: v for k, v in GPTConfig().to_dict().items()
           if k not in ("norm", "position", "rope_theta", "rope_layout", "mlp", "ffn_hidden",
                        "n_kv_head")}
    cfg = GPTConfig.from_dict(old)
    assert cfg == GPTConfig() and cfg.arch == "gpt2"
    assert (cfg.kv_heads, cfg.ffn_width) == (cfg.n_head, 4 * cfg.n_embd)


def test_ffn_width_rule():
    """4C for GELU; int(8C/3) rounded up to a multiple of 32 for SwiGLU (llama2.c's rule:
    C=288 -> 768 as in its stories15M); ffn_hidden when given."""
    assert GPTConfig(n_embd=128).ffn_width == 512
    assert GPTConfig(n_embd=288, n_head=6, mlp="swiglu").ffn_width == 768
    assert GPTConfig(n_embd=128, mlp="swiglu").ffn_width == 352  # int(341.3) = 341 -> 352
    assert GPTConfig(n_embd=128, mlp="swiglu", ffn_hidden=100).ffn_width == 100


def test_llama_param_shapes():
    """No wpe with RoPE, RMSNorm weights only, fused q/k/v of (NH + 2 KV) hs rows, SwiGLU's
    three matrices; biases (on the Linears only) when bias=True."""
    cfg = GPTConfig(vocab_size=7, n_layer=1, n_head=4, n_embd=8, norm="rmsnorm",
                    position="rope", mlp="swiglu", ffn_hidden=10, n_kv_head=2, bias=False,
                    tie_weights=False)
    assert param_shapes(cfg) == {
        "transformer.wte.weight": (7, 8),
        "transformer.h.0.ln_1.weight": (8,),
        "transformer.h.0.attn.c_attn.weight": ((4 + 2 * 2) * 2, 8),
        "transformer.h.0.attn.c_proj.weight": (8, 8),
        "transformer.h.0.ln_2.weight": (8,),
        "transformer.h.0.mlp.c_gate.weight": (10, 8),
        "transformer.h.0.mlp.c_fc.weight": (10, 8),
        "transformer.h.0.mlp.c_proj.weight": (8, 10),
        "transformer.ln_f.weight": (8,),
        "lm_head.weight": (7, 8),
    }
    biased = param_shapes(cfg.replace(bias=True))
    assert biased["transformer.h.0.attn.c_attn.bias"] == (16,)
    assert biased["transformer.h.0.mlp.c_gate.bias"] == (10,)
    assert "transformer.h.0.ln_1.bias" not in biased  # RMSNorm has no bias


def test_named_architectures():
    llama = GPTConfig(n_head=4, **arch_fields("llama", 4))
    assert (llama.arch, llama.kv_heads, llama.bias, llama.tie_weights) == ("llama", 2, False,
                                                                          False)
    assert llama.describe_arch().startswith("llama (rmsnorm, rope halves theta 10000, swiglu")
    assert GPTConfig(n_head=3, n_embd=12, **arch_fields("llama", 3)).kv_heads == 3  # odd NH
    assert GPTConfig(**arch_fields("gpt2", 4)) == GPTConfig()
    assert GPTConfig(position="rope").arch == "custom"  # GPT-2 with RoPE: one flag away
    with pytest.raises(ConfigError, match="llama"):
        arch_fields("mistral", 4)
