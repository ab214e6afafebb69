"""GPT-2 weights in Hugging Face layout into both twins (numpy_gpt.hf.importer, GPT.from_hf).

Two sources: a fixture folder built here in HF's names and Conv1D (in, out) layout (always
runs), and a small randomly initialised transformers.GPT2LMHeadModel saved with
save_pretrained, whose logits both twins must reproduce (skipped without transformers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import torch_gpt
from numpy_gpt import GPT as NumpyGPT
from numpy_gpt.hf.importer import CONV1D_WEIGHTS, HFImportError, load_hf_gpt2
from numpy_gpt.nn.config import GPTConfig
from parity.tolerances import tolerance

CFG = GPTConfig(vocab_size=11, block_size=7, n_layer=2, n_head=2, n_embd=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_hf_folder(path: Path, cfg: GPTConfig, params: dict[str, np.ndarray], *,
                    prefix: bool = True, fmt: str = "safetensors", **hf_extra) -> Path:
    """Write `params` (canonical names) as save_pretrained would: HF config.json, Conv1D
    weights transposed to (in, out), the attn.bias mask buffers, optional "transformer."."""
    path.mkdir(parents=True, exist_ok=True)
    hf_config = {"model_type": "gpt2", "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                 "n_embd": cfg.n_embd, "n_positions": cfg.block_size,
                 "vocab_size": cfg.vocab_size, "layer_norm_epsilon": cfg.layer_norm_eps,
                 "activation_function": "gelu_new" if cfg.gelu == "tanh" else "gelu",
                 "tie_word_embeddings": cfg.tie_weights, "n_inner": None} | hf_extra
    (path / "config.json").write_text(json.dumps(hf_config))
    tensors = {}
    for name, value in params.items():
        if name.endswith(CONV1D_WEIGHTS):
            value = value.T
        if not prefix and name.startswith("transformer."):
            name = name[len("transformer."):]
        tensors[name] = np.ascontiguousarray(value)
    T = cfg.block_size
    for i in range(cfg.n_layer):  # the causal-mask buffers old checkpoints carry
        tensors[f"{'transformer.' if prefix else ''}h.{i}.attn.bias"] = np.tril(
            np.ones((1, 1, T, T), np.float32))
    if fmt == "safetensors":
        save_file(tensors, str(path / "model.safetensors"))
    elif fmt == "sharded":
        names = sorted(tensors)
        shards = {"model-00001-of-00002.safetensors": names[::2],
                  "model-00002-of-00002.safetensors": names[1::2]}
        for file, keys in shards.items():
            save_file({k: tensors[k] for k in keys}, str(path / file))
        weight_map = {k: f for f, keys in shards.items() for k in keys}
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    else:
        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()},
                   path / "pytorch_model.bin")
    return path


def _params(cfg: GPTConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
            for k, v in NumpyGPT(cfg, seed=seed).params.items()}


@pytest.mark.parametrize("prefix", [True, False])
@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "bin"])
def test_fixture_folder_imports_exactly(tmp_path: Path, prefix: bool, fmt: str) -> None:
    params = _params(CFG)
    write_hf_folder(tmp_path, CFG, params, prefix=prefix, fmt=fmt)
    config, got = load_hf_gpt2(tmp_path)
    assert config == CFG
    assert list(got) == list(params)
    for k in params:
        assert np.array_equal(got[k], params[k]), k


@pytest.mark.parametrize("tie", [True, False])
def test_both_twins_compute_the_same_logits_from_hf_weights(tmp_path: Path, tie: bool) -> None:
    cfg = CFG.replace(tie_weights=tie, gelu="tanh" if tie else "exact")
    write_hf_folder(tmp_path, cfg, _params(cfg, seed=1))
    config, params = load_hf_gpt2(tmp_path, dtype="float64")
    assert config.tie_weights is tie and config.gelu == cfg.gelu
    ref = NumpyGPT.from_params(config, params, dtype="float64")
    model = torch_gpt.GPT.from_hf(tmp_path, dtype="float64")
    assert ("lm_head.weight" in model.state_dict()) is not tie
    idx = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.block_size))
    logits_np, _, _ = ref.forward(idx)
    logits_t, _ = model(torch.from_numpy(idx))
    err = np.abs(logits_t.detach().numpy() - logits_np).max() / np.abs(logits_np).max()
    assert err <= tolerance("float64", "cpu", "forward")


def test_tied_checkpoint_with_a_stored_head_drops_it(tmp_path: Path) -> None:
    params = _params(CFG)
    params_with_head = params | {"lm_head.weight": params["transformer.wte.weight"]}
    write_hf_folder(tmp_path, CFG, params_with_head, fmt="bin")
    _, got = load_hf_gpt2(tmp_path)
    assert "lm_head.weight" not in got


def test_bad_folders_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(HFImportError, match="config.json"):
        load_hf_gpt2(tmp_path)
    params = _params(CFG)
    write_hf_folder(tmp_path / "a", CFG, params, activation_function="relu")
    with pytest.raises(HFImportError, match="activation_function"):
        load_hf_gpt2(tmp_path / "a")
    write_hf_folder(tmp_path / "b", CFG, params, n_inner=5)
    with pytest.raises(HFImportError, match="n_inner"):
        load_hf_gpt2(tmp_path / "b")
    write_hf_folder(tmp_path / "c", CFG, params, scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(HFImportError, match="scale_attn_by_inverse_layer_idx"):
        load_hf_gpt2(tmp_path / "c")
    del params["transformer.h.1.mlp.c_fc.bias"]
    write_hf_folder(tmp_path / "d", CFG, params)
    with pytest.raises(HFImportError, match="missing"):
        load_hf_gpt2(tmp_path / "d")
    write_hf_folder(tmp_path / "e", CFG, _params(CFG), n_positions=9)  # wpe has 7 rows
    with pytest.raises(HFImportError, match="shape"):
        load_hf_gpt2(tmp_path / "e")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "config.json").write_text(json.dumps({"n_layer": 1}))
    with pytest.raises(HFImportError):
        load_hf_gpt2(tmp_path / "f")
    (tmp_path / "e" / "model.safetensors").unlink()
    with pytest.raises(HFImportError, match="no model.safetensors"):
        load_hf_gpt2(tmp_path / "e")


# ---------------------------------------------------------------------- real transformers


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory):
    """Two tiny random GPT2LMHeadModels (tied tanh GELU; untied exact GELU), saved."""
    transformers = pytest.importorskip("transformers")
    out = []
    for tie, act in ((True, "gelu_new"), (False, "gelu")):
        hf_cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=8, n_positions=16,
                                         vocab_size=11, activation_function=act,
                                         tie_word_embeddings=tie, bos_token_id=0,
                                         eos_token_id=0)
        torch.manual_seed(0)  # transformers' init draws from the global RNG
        hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
        with torch.no_grad():  # LN gains/biases are 1/0 at init: make every tensor matter
            for p in hf.parameters():
                p.add_(0.05 * torch.randn_like(p))
        path = tmp_path_factory.mktemp(f"hf_{act}")
        hf.save_pretrained(path)
        out.append((hf, path))
    return out


@pytest.mark.parametrize("which", [0, 1])
def test_transformers_gpt2_logits_match_both_twins(hf_models, which: int) -> None:
    hf, path = hf_models[which]
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits.double().numpy()
    model = torch_gpt.GPT.from_hf(path)
    config, params = load_hf_gpt2(path)
    assert config.tie_weights is (which == 0)
    ref = NumpyGPT.from_params(config, params, dtype="float32")
    got_t, _ = model(idx)
    got_n, _, _ = ref.forward(idx.numpy())
    tol = tolerance("float32", "cpu", "forward")
    scale = np.abs(expected).max()
    assert np.abs(got_t.detach().double().numpy() - expected).max() / scale <= tol
    assert np.abs(got_n.astype(np.float64) - expected).max() / scale <= tol
