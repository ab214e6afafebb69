"""The checkpoint folder across twins: bit-exact round trips both ways, and broken files.

A folder written by either twin loads in the other with every parameter bit for bit equal
(DESIGN.md "Checkpoint folder"); a truncated, corrupted or mismatched folder raises
CheckpointError with a plain message, never a pickle/struct traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_gpt
from numpy_gpt import GPT as NumpyGPT
from numpy_gpt.nn.checkpoint import MODEL_FILE, CheckpointError, load_checkpoint
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.tokenizers import CharTokenizer, load_tokenizer

CFG = GPTConfig(vocab_size=13, block_size=6, n_layer=2, n_head=2, n_embd=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _assert_bit_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k, x in a.items():
        assert x.dtype == b[k].dtype, k
        assert np.array_equal(x.view(np.uint8), b[k].view(np.uint8)), k  # bits, not values


def _torch_model(cfg: GPTConfig, dtype: str, seed: int = 0) -> torch_gpt.GPT:
    model = torch_gpt.GPT(cfg, dtype=dtype, seed=seed)
    with torch.no_grad():  # perturb so that values are not just the init's
        for p in model.parameters():
            p.add_(torch.linspace(-1e-3, 1e-3, p.numel(), dtype=p.dtype).view_as(p))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tie", [True, False])
def test_torch_round_trip_is_bit_exact(tmp_path: Path, dtype: str, tie: bool) -> None:
    cfg = CFG.replace(tie_weights=tie, bias=not tie)
    model = _torch_model(cfg, dtype)
    model.save(tmp_path / "ckpt")
    again = torch_gpt.GPT.load(tmp_path / "ckpt")
    assert again.config == cfg
    assert again.transformer.wte.weight.dtype == getattr(torch, dtype)
    _assert_bit_equal(again.numpy_params(), model.numpy_params())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_written_loads_in_numpy_bit_exact(tmp_path: Path, dtype: str) -> None:
    model = _torch_model(CFG, dtype)
    tok = CharTokenizer.train("hello world, abc")
    model.save(tmp_path / "ckpt", tokenizer=tok)
    ref = NumpyGPT.load(tmp_path / "ckpt")
    _assert_bit_equal(ref.params, model.numpy_params())
    assert load_tokenizer(tmp_path / "ckpt" / "tokenizer.json").encode("abc") == tok.encode("abc")
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["tokenizer"] == "char" and meta["dtype"] == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_written_loads_in_torch_bit_exact(tmp_path: Path, dtype: str) -> None:
    ref = NumpyGPT(CFG.replace(tie_weights=False), dtype=dtype, seed=5)
    ref.save(tmp_path / "ckpt")
    model = torch_gpt.GPT.load(tmp_path / "ckpt")
    _assert_bit_equal(model.numpy_params(), ref.params)
    idx = np.array([[1, 2, 3, 4]])
    logits_np, _, _ = ref.forward(idx)
    logits_t, _ = model(torch.from_numpy(idx))
    # same weights, same function (float64: within the parity forward tolerance)
    err = np.abs(logits_t.detach().numpy() - logits_np).max() / np.abs(logits_np).max()
    assert err <= (1e-12 if dtype == "float64" else 1e-5)


def test_load_with_a_dtype_override(tmp_path: Path) -> None:
    _torch_model(CFG, "float64").save(tmp_path / "ckpt")
    model = torch_gpt.GPT.load(tmp_path / "ckpt", dtype="float32", attn="manual")
    assert model.transformer.wte.weight.dtype == torch.float32
    assert model.transformer.h[0].attn.attn == "manual"


def test_save_replaces_an_existing_folder(tmp_path: Path) -> None:
    _torch_model(CFG, "float32", seed=1).save(tmp_path / "ckpt")
    second = _torch_model(CFG, "float32", seed=2)
    second.save(tmp_path / "ckpt")
    _assert_bit_equal(torch_gpt.GPT.load(tmp_path / "ckpt").numpy_params(),
                      second.numpy_params())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp folders left


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    _torch_model(CFG, "float32").save(tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.mark.parametrize("loader", ["torch", "numpy"])
def test_truncated_weights_raise_checkpoint_error(saved: Path, loader: str) -> None:
    data = (saved / MODEL_FILE).read_bytes()
    (saved / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        torch_gpt.GPT.load(saved) if loader == "torch" else NumpyGPT.load(saved)


def test_corrupted_header_raises_checkpoint_error(saved: Path) -> None:
    data = bytearray((saved / MODEL_FILE).read_bytes())
    data[8:40] = b"\xff" * 32  # garbage inside the JSON header
    (saved / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        torch_gpt.GPT.load(saved)


def test_corrupted_config_raises_checkpoint_error(saved: Path) -> None:
    (saved / "config.json").write_text('{"format_version": 1, "model": {')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        torch_gpt.GPT.load(saved)


def test_missing_or_mismatched_files_raise_checkpoint_error(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["model"]["vocab_size"] = 99
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        torch_gpt.GPT.load(saved)
    meta["format_version"] = 999
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version"):
        torch_gpt.GPT.load(saved)
    (saved / MODEL_FILE).unlink()
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        torch_gpt.GPT.load(saved.parent / "nowhere")
