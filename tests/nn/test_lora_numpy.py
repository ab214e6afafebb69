"""numpy_gpt LoRA: zero-init start, merge equals the adapted model, adapter files, errors,
fingerprints and the check that an adapter belongs on a checkpoint.

(The LoRA gradients are checked by test_layers / test_model through numpy_gpt.nn.gradcheck.)
"""

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.nn.checkpoint import CheckpointError, checkpoint_fingerprint, params_fingerprint
from numpy_gpt.nn.lora import (
    AdapterError,
    LoRAConfig,
    adapter_fingerprint,
    check_adapter_fits,
    load_adapter,
    save_adapter,
)

CFG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 5, 7, 2, 9]])


def test_fresh_adapter_leaves_the_model_unchanged():
    model = GPT(CFG, dtype="float64", seed=0)
    before, _, _ = model.forward(IDX)
    model.add_lora(LoRAConfig(rank=4, targets=("c_attn", "c_fc")), seed=1)
    after, _, _ = model.forward(IDX)
    np.testing.assert_array_equal(before, after)  # B = 0
    assert len(model.lora_params) == 2 * 2 * 2


def test_merged_equals_adapted_and_adapter_round_trip(tmp_path):
    model = GPT(CFG, dtype="float64", seed=0)
    lcfg = LoRAConfig(rank=2, alpha=8.0, targets=("c_attn", "c_proj", "c_fc"))
    model.add_lora(lcfg, seed=1)
    rng = np.random.default_rng(0)
    for p in model.lora_params.values():
        p += rng.standard_normal(p.shape)
    adapted, _, _ = model.forward(IDX)
    save_adapter(tmp_path / "adapter", lcfg, model.lora_params, base="ckpt")
    lcfg2, tensors, meta = load_adapter(tmp_path / "adapter")
    assert lcfg2 == lcfg and meta["base_checkpoint"] == "ckpt"

    fresh = GPT(CFG, dtype="float64", seed=0)
    fresh.set_lora(lcfg2, tensors)
    np.testing.assert_array_equal(fresh.forward(IDX)[0], adapted)
    fresh.merge_lora()
    assert fresh.lora is None and not fresh.lora_params
    np.testing.assert_allclose(fresh.forward(IDX)[0], adapted, rtol=1e-12, atol=1e-12)


def test_bad_lora_settings_and_files(tmp_path):
    with pytest.raises(ValueError, match="not a module of this GPT; choose among c_attn"):
        LoRAConfig(targets=("q_proj",))
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(rank=0)
    with pytest.raises(CheckpointError, match="no LoRA adapter"):
        load_adapter(tmp_path / "nothing")
    model = GPT(CFG, seed=0)
    with pytest.raises(ValueError, match="do not match"):
        model.set_lora(LoRAConfig(rank=2), {})


def test_fingerprints_name_the_weights_not_their_dtype_or_order(tmp_path):
    """params_fingerprint: the same for a float64 copy of float32 weights and for the
    checkpoint on disk; different when one value changes. adapter_fingerprint also covers the
    LoRA settings (alpha changes the merged weights)."""
    model = GPT(CFG, seed=0)
    fp = params_fingerprint(model.params)
    assert fp == params_fingerprint(dict(reversed(model.params.items())))
    assert fp == params_fingerprint({k: v.astype(np.float64) for k, v in model.params.items()})
    model.save(tmp_path / "ckpt")
    assert checkpoint_fingerprint(tmp_path / "ckpt") == fp
    model.params["transformer.ln_f.bias"][0] += 1e-3
    assert params_fingerprint(model.params) != fp
    lcfg = LoRAConfig(rank=2)
    model.add_lora(lcfg, seed=1)
    fa = adapter_fingerprint(lcfg, model.lora_params)
    assert fa != adapter_fingerprint(LoRAConfig(rank=2, alpha=4.0), model.lora_params)


def test_adapter_fits_only_its_base(tiny_lora):
    """check_adapter_fits: True on its base, AdapterError on another base or on the model it
    is merged into, False (nothing to check) for an adapter that records no base."""
    for name in ("alpaca", "legacy"):
        lcfg, tensors, meta = load_adapter(tiny_lora[name])
        assert check_adapter_fits(tiny_lora[name], lcfg, tensors, meta,
                                  tiny_lora["base"]) is (name == "alpaca")
    lcfg, tensors, meta = load_adapter(tiny_lora["alpaca"])
    assert meta["chat_template"] == "alpaca" and meta["base_checkpoint"] == str(tiny_lora["base"])
    for ckpt, why in (("other", "was trained on another base than"),
                      ("merged", "is already merged into")):
        with pytest.raises(AdapterError, match=why):
            check_adapter_fits(tiny_lora["alpaca"], lcfg, tensors, meta, tiny_lora[ckpt])
