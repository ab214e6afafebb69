"""Pictures: attention maps of a prompt, and the training diagnostics the loop logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.cli import main as cli
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.prepare import prepare
from numpy_gpt.nn.attention_maps import attention_maps, plot_attention
from numpy_gpt.training.config import TrainConfig
from numpy_gpt.training.diagnostics import StepProbe, plot_training
from numpy_gpt.training.numpy_backend import NumpyBackend, numpy_backend
from numpy_gpt.training.train import train

TEXT = "ROMEO: But soft, what light through yonder window breaks?\n" * 30
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "input.txt").write_text(TEXT)
    return prepare(root / "input.txt", root / "prepared", fmt="text", tokenizer="char",
                   name="tiny")


def tiny(data: Path) -> TrainConfig:
    return TrainConfig(dataset=str(data), n_layer=2, n_head=2, n_embd=16, block_size=16,
                       batch_size=4, max_iters=10, eval_interval=5, eval_iters=1,
                       warmup_iters=2, learning_rate=3e-3, sample_tokens=0)


def test_attention_maps_are_causal_softmax_rows_for_every_layer_and_head(tmp_path):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=3, n_head=2, n_embd=8),
                dtype="float64", seed=0)
    ids = [1, 4, 1, 7, 2, 9, 3, 3, 5, 6]  # longer than block_size: the last 8 are used
    maps = attention_maps(model, ids)
    assert maps.shape == (3, 2, 8, 8)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-12)
    assert not maps[..., np.triu_indices(8, k=1)[0], np.triu_indices(8, k=1)[1]].any()
    # T=1: the only token attends to itself
    np.testing.assert_array_equal(attention_maps(model, [4]), np.ones((3, 2, 1, 1)))
    assert plot_attention(maps, list("abcdefgh"), tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == PNG
    with pytest.raises(ValueError, match="empty"):
        attention_maps(model, [])


def test_step_probe_measures_gradient_norms_and_update_ratios(data_dir):
    cfg = tiny(data_dir)
    ds = TokenDataset(data_dir)
    backend = NumpyBackend(GPT(cfg.model_config(ds.vocab_size), seed=0), cfg)
    x, y = ds.get_batch("train", 4, 16, np.random.default_rng(0))
    backend.forward_backward(x, y, 1.0)
    w = "transformer.h.1.mlp.c_fc.weight"
    before, grad = backend.model.params[w].copy(), backend.grads[w].copy()
    probe = StepProbe(backend)
    backend.step(1e-3, 1.0)
    diag = probe.finish()
    name = "h.1.mlp.c_fc"
    assert set(diag["grad_norm"]) == set(diag["update_ratio"])
    assert "h.0.ln_1" not in diag["grad_norm"] and "wte" in diag["grad_norm"]  # 2-D only
    assert diag["grad_norm"][name] == pytest.approx(np.linalg.norm(grad), rel=1e-5)
    ratio = np.linalg.norm(backend.model.params[w] - before) / np.linalg.norm(before)
    assert diag["update_ratio"][name] == pytest.approx(ratio, rel=1e-4)


@pytest.mark.parametrize("twin", ["numpy", "torch"])
def test_training_logs_diagnostics_and_the_plot_commands_draw_them(twin, data_dir, tmp_path,
                                                                   capsys):
    if twin == "numpy":
        make = numpy_backend
    else:
        pytest.importorskip("torch")
        from torch_gpt.train import torch_backend as make
    out = tmp_path / "run"
    result = train(tiny(data_dir), TokenDataset(data_dir), out, make)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [0, 5, 10]
    assert "grad_norm" not in records[0]  # no step before the first evaluation
    for r in records[1:]:
        assert len(r["grad_norm"]) == 2 + 4 * 2  # wte, wpe, 4 Linear weights per layer
        assert all(0.0 < v < 1.0 for v in r["update_ratio"].values())
    assert plot_training(result.log, tmp_path / "d.png")
    if twin == "numpy":  # the commands, once
        assert cli.main(["plot", "training", "--run", str(out)]) == 0
        assert (out / "diagnostics.png").read_bytes()[:4] == PNG
        png = tmp_path / "att.png"
        assert cli.main(["plot", "attention", "--ckpt", str(out / "best"), "--prompt",
                         "ROMEO: But", "--out", str(png)]) == 0
        assert png.read_bytes()[:4] == PNG
        assert "2 layers x 2 heads, 10 tokens" in capsys.readouterr().out
        (out / "log.jsonl").write_text(json.dumps(records[0]) + "\n")
        assert cli.main(["plot", "training", "--run", str(out)]) == 1
        assert "no gradient diagnostics" in capsys.readouterr().err


def test_plot_runs_overlays_runs_and_their_difference(tmp_path, capsys):
    """`plot runs`: several logs in one picture; with two, their differences at the
    iterations both evaluated; a missing log or a wrong number of labels is one line."""
    from numpy_gpt.training.curves import loss_differences

    def log(folder: Path, losses: list[float]) -> Path:
        folder.mkdir()
        (folder / "log.jsonl").write_text("".join(
            json.dumps({"iter": 10 * i, "train_loss": v + 0.1, "val_loss": v}) + "\n"
            for i, v in enumerate(losses)))
        return folder

    a = log(tmp_path / "numpy", [4.0, 3.0, 2.5])
    b = log(tmp_path / "torch", [4.0, 3.0 + 1e-6, 2.5 + 2e-6, 2.4])
    diffs = loss_differences(json_lines(a), json_lines(b))
    assert [it for it, _ in diffs["val"]] == [0, 10, 20]  # the common iterations
    assert diffs["val"][0][1] == 0 and diffs["val"][2][1] == pytest.approx(2e-6)
    png = tmp_path / "twins.png"
    assert cli.main(["plot", "runs", "--run", str(a), "--run", str(b), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == PNG
    assert "the loss curves of numpy, torch" in capsys.readouterr().out
    assert cli.main(["plot", "runs", "--run", str(a), "--run", str(b), "--label", "x",
                     "--out", str(png)]) == 1
    assert "1 --label for 2 --run" in capsys.readouterr().err
    assert cli.main(["plot", "runs", "--run", str(tmp_path), "--out", str(png)]) == 1
    assert "log.jsonl not found" in capsys.readouterr().err


def json_lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]
