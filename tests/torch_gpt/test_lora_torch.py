"""torch_gpt LoRA: names, frozen base, float64 parity with numpy_gpt, merge, adapter files.

The parity rows themselves come from parity/cases/lora.py (the same cases `python -m parity`
runs); these tests also pin the module structure and the cross-twin adapter files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_gpt
from numpy_gpt import GPT as NumpyGPT
from numpy_gpt import GPTConfig
from numpy_gpt.nn.lora import LoRAConfig, lora_param_shapes
from numpy_gpt.nn.lora import load_adapter as np_load_adapter
from numpy_gpt.nn.lora import save_adapter as np_save_adapter
from parity import PRESETS, run
from parity.cases import select
from parity.harness import format_row
from torch_gpt.lora import (
    LoRALinear,
    apply_lora,
    load_adapter,
    lora_numpy_params,
    lora_parameters,
    merge_lora,
    save_adapter,
)

CFG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
LCFG = LoRAConfig(rank=2, alpha=4.0, targets=("c_attn", "c_proj", "c_fc"))
IDX = torch.tensor([[1, 5, 7, 2, 9]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomize_adapter(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model).values():
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lora_parity_cases_pass(dtype: str) -> None:
    """float64: forward <= 1e-12, every gradient (A, B, base through the input path) <= 1e-10."""
    cases = select(["lora/*"])
    assert len(cases) >= 7
    rows = run([(dtype, "cpu")], *PRESETS["tiny"], cases=cases)
    assert {r.case for r in rows} == {c.name for c in cases}
    assert all(r.ok for r in rows), "\n".join(format_row(r) for r in rows if not r.ok)
    names = {r.name for r in rows}
    assert any(n.endswith("lora_A.weight") for n in names)
    assert any("dx" in n for n in names)


def test_planted_lora_gradient_fault_is_caught() -> None:
    fault = "transformer.h.0.attn.c_attn.lora_A.weight"
    rows = run([("float64", "cpu")], *PRESETS["tiny"], cases=select(["lora/model-all-*"]),
               fault=fault)
    failed = [r.name for r in rows if not r.ok]
    assert failed == [f"grad:{fault}"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_seed_gives_both_twins_the_same_adapter(dtype: str) -> None:
    """apply_lora and numpy_gpt's add_lora draw A from one NumPy stream: bit-identical."""
    ref = NumpyGPT(CFG, seed=0, dtype=dtype)
    ref.add_lora(LCFG, seed=5)
    model = apply_lora(torch_gpt.GPT(CFG, dtype=dtype), LCFG, seed=5)
    ours = lora_numpy_params(model)
    assert set(ours) == set(ref.lora_params)
    for k, v in ref.lora_params.items():
        assert ours[k].dtype == v.dtype and np.array_equal(ours[k], v), k
    assert np.any(ours["transformer.h.1.mlp.c_fc.lora_A.weight"] != 0)
    other = lora_numpy_params(apply_lora(torch_gpt.GPT(CFG, dtype=dtype), LCFG, seed=6))
    assert not np.array_equal(other["transformer.h.0.attn.c_attn.lora_A.weight"],
                              ours["transformer.h.0.attn.c_attn.lora_A.weight"])


def test_names_shapes_and_frozen_base() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64")
    base_keys = set(model.state_dict())
    apply_lora(model, LCFG, seed=0)
    sd = model.state_dict()
    assert set(sd) == base_keys | set(lora_param_shapes(CFG, LCFG))
    for k, shape in lora_param_shapes(CFG, LCFG).items():
        assert tuple(sd[k].shape) == shape
    assert isinstance(model.transformer.h[0].attn.c_attn, LoRALinear)
    assert isinstance(model.transformer.h[0].attn.c_attn, torch.nn.Linear)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_param_shapes(CFG, LCFG))
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, LCFG)


def test_fresh_adapter_is_identity_and_merge_gives_a_plain_gpt() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64").eval()
    with torch.no_grad():
        before = model(IDX)[0]
    apply_lora(model, LCFG, seed=3)
    with torch.no_grad():
        assert torch.equal(model(IDX)[0], before)  # B = 0
    _randomize_adapter(model)
    with torch.no_grad():
        adapted = model(IDX)[0]
    assert not torch.allclose(adapted, before)
    merge_lora(model)
    assert model.lora is None and not lora_parameters(model)
    assert type(model.transformer.h[1].mlp.c_fc) is torch.nn.Linear
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(IDX)[0], adapted, rtol=1e-12, atol=1e-12)
    plain = torch_gpt.GPT(CFG, dtype="float64", init=False)
    plain.load_state_dict(model.state_dict())  # exactly the canonical keys


def test_only_lora_params_train_in_a_backward_step() -> None:
    model = torch_gpt.GPT(CFG, dtype="float64")
    apply_lora(model, LoRAConfig(rank=2, dropout=0.1), seed=0)
    model.train()
    _, loss = model(IDX, IDX)
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (".lora_" in name), name


def test_adapter_files_load_in_the_other_twin(tmp_path) -> None:
    """torch -> numpy and numpy -> torch through numpy_gpt's adapter files."""
    model = torch_gpt.GPT(CFG, dtype="float64").eval()
    apply_lora(model, LCFG, seed=0)
    _randomize_adapter(model, seed=1)
    save_adapter(model, tmp_path / "a", base="somewhere")
    lcfg, tensors, meta = np_load_adapter(tmp_path / "a")
    assert lcfg == LCFG and meta["base_checkpoint"] == "somewhere"
    ref = NumpyGPT.from_params(CFG, {k: v.detach().numpy() for k, v in
                                     model.state_dict().items() if ".lora_" not in k},
                               dtype="float64")
    ref.set_lora(lcfg, tensors)
    with torch.no_grad():
        logits = model(IDX)[0].numpy()
    np.testing.assert_allclose(ref.forward(IDX.numpy())[0], logits, rtol=1e-12, atol=1e-13)

    np_save_adapter(tmp_path / "b", lcfg, ref.lora_params)
    other = torch_gpt.GPT.from_params(CFG, ref.params, dtype="float64").eval()
    assert load_adapter(other, tmp_path / "b") == lcfg
    for k, v in lora_numpy_params(other).items():
        np.testing.assert_array_equal(v, tensors[k])


def test_bad_adapter_inputs(tmp_path) -> None:
    model = torch_gpt.GPT(CFG)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        save_adapter(model, tmp_path / "x")
    with pytest.raises(ValueError, match="no LoRA adapter at"):
        load_adapter(model, tmp_path / "missing")
    with pytest.raises(ValueError, match="not a module of this GPT"):
        LoRAConfig(targets=("wte",))
