"""`eval`: a full token-weighted pass, the same number from both twins, clear errors."""

import math
import re

import pytest
from conftest import twin_named

from numpy_gpt.cli.main import main
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.prepare import prepare
from numpy_gpt.nn.model import GPT
from numpy_gpt.training.config import TrainConfig
from numpy_gpt.training.numpy_backend import numpy_backend
from numpy_gpt.training.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "in.txt").write_text("to be or not to be, that is the question.\n" * 60)
    data = prepare(root / "in.txt", root / "data", fmt="text", tokenizer="char", name="t")
    cfg = TrainConfig(dataset=str(data), n_layer=1, n_head=2, n_embd=16, block_size=16,
                      batch_size=4, max_iters=10, eval_interval=5, eval_iters=1,
                      sample_tokens=0)
    train(cfg, TokenDataset(data), root / "run", numpy_backend)
    return root / "run", data



def test_both_twins_agree_and_cover_every_token(run, capsys):
    folder, data = run
    ckpt = str(folder / "best")
    assert main(["eval", "--ckpt", ckpt], twin=twin_named("numpy")) == 0
    out = capsys.readouterr().out
    n_val = TokenDataset(data).num_tokens("val")
    assert f"over {n_val - 1:,} tokens" in out  # every val token but the first is predicted
    np_loss = float(re.search(r"loss (\d+\.\d+)", out).group(1))
    assert main(["eval", "--ckpt", ckpt, "--dtype", "float64"], twin=twin_named("torch")) == 0
    torch_loss = float(re.search(r"loss (\d+\.\d+)", capsys.readouterr().out).group(1))
    assert np_loss == pytest.approx(torch_loss, abs=2e-4)
    assert math.isfinite(np_loss) and GPT.load(ckpt).config.block_size == 16


def test_eval_errors(run, capsys, tmp_path):
    folder, _ = run
    assert main(["eval", "--ckpt", str(tmp_path / "missing")], twin=twin_named("numpy")) == 1
    assert "no checkpoint folder" in capsys.readouterr().err
    assert main(["eval", "--ckpt", str(folder / "best"), "--batch-size", "0"],
                twin=twin_named("numpy")) == 1
    assert "--batch-size must be >= 1" in capsys.readouterr().err
