"""numpy_gpt LoRA: zero-init start, merge equals the adapted model, adapter files, errors.

(The LoRA gradients are checked by test_layers / test_model through numpy_gpt.gradcheck.)
"""

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.checkpoint import CheckpointError
from numpy_gpt.lora import LoRAConfig, load_adapter, save_adapter

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
