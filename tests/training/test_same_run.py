"""Same seed, same run, in either twin (issue 28): the same initial weights, bit for bit
(numpy_gpt/nn/init_spec.py: one NumPy generator, canonical order, float64 draws cast), the
same batches (the shared loop's generator), and so, without dropout, the same loss at every
step to the rounding of the run's dtype.

Measured here (1-layer/2-layer 16/32-wide models on the citizens text, AMD EPYC, OpenBLAS):
the float32 per-step losses of 50 steps differ by at most 9.1e-8 relative (under one float32
ulp, 1.19e-7); the test allows 1e-6. float64: at most 3e-16 over 20 steps; the test allows
1e-10, the parity table's bound for parameters after AdamW steps (DESIGN.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_train import factory, final_params, tiny

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.nn.config import arch_fields
from numpy_gpt.training.train import Reporter, train

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWINS = ("numpy", "torch")


class StepLosses(Reporter):
    """Collects the loss of every training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def step(self, it: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.losses.append(loss)


def run_both(data: Path, tmp_path: Path, **changes) -> dict[str, tuple[np.ndarray, dict]]:
    """{twin: (per-step losses, final params)} of one run's settings in each twin."""
    runs = {}
    for twin in TWINS:
        rep = StepLosses()
        out = tmp_path / twin
        train(tiny(data, **changes), TokenDataset(data), out, factory(twin), reporter=rep)
        runs[twin] = (np.array(rep.losses), final_params(out))
    return runs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_initial_checkpoints_are_identical_files(dtype, citizens_chars, tmp_path):
    """--max-iters 0 writes the seeded model as it starts: the same bytes from either twin."""
    files = {}
    for twin in TWINS:
        train(tiny(citizens_chars, max_iters=0, dtype=dtype, seed=7), TokenDataset(citizens_chars),
              tmp_path / twin, factory(twin))
        files[twin] = (tmp_path / twin / "last" / "model.safetensors").read_bytes()
    assert files["numpy"] == files["torch"]


@pytest.mark.parametrize("changes", [{}, {"bias": False, "tie_weights": False},
                                     arch_fields("llama", 2)],
                         ids=["gpt2", "no-bias-untied", "llama"])
def test_one_seed_is_one_model_in_both_twins(changes):
    """Every parameter of every architecture, c_gate and the GQA c_attn included: the init
    rules go by name (init_spec.py), and the draws follow param_shapes' order."""
    import torch_gpt

    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, **changes)
    for dtype in ("float32", "float64"):
        ours = GPT(cfg, dtype=dtype, seed=5).params
        theirs = torch_gpt.GPT(cfg, dtype=dtype, seed=5).state_dict()
        assert ours.keys() == theirs.keys()
        for name, value in ours.items():
            np.testing.assert_array_equal(value, theirs[name].numpy(), err_msg=name)
    other = torch_gpt.GPT(cfg, seed=6).state_dict()["transformer.wte.weight"].numpy()
    assert not np.array_equal(GPT(cfg, seed=5).params["transformer.wte.weight"], other)


def test_float32_loss_curves_are_equal_to_rounding(citizens_chars, tmp_path):
    """50 steps without dropout, with gradient accumulation: every step's loss within 1e-6
    relative (measured: 9.1e-8, under one float32 ulp)."""
    runs = run_both(citizens_chars, tmp_path, max_iters=50, eval_interval=50, dropout=0.0,
                    n_layer=2, n_embd=32)
    ours, theirs = runs["numpy"][0], runs["torch"][0]
    assert len(ours) == len(theirs) == 50
    assert theirs[-1] < theirs[0] - 0.5  # it learned: the curve is a curve, not a constant
    rel = np.abs(ours - theirs) / np.abs(theirs)
    assert rel.max() <= 1e-6, (rel.max(), int(rel.argmax()))


def test_float64_runs_agree_to_1e_10(citizens_chars, tmp_path):
    runs = run_both(citizens_chars, tmp_path, max_iters=20, eval_interval=10, dropout=0.0,
                    dtype="float64")
    (ours, ours_params), (theirs, theirs_params) = runs["numpy"], runs["torch"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=0)
    for name, value in ours_params.items():
        ref = theirs_params[name]
        err = np.abs(value - ref).max() / max(np.abs(ref).max(), 1e-30)
        assert err <= 1e-10, (name, err)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-6)])
def test_with_numpy_masks_a_dropout_run_is_the_same_run(dtype, tol, citizens_chars, tmp_path):
    """--dropout-masks numpy: torch_gpt takes numpy_gpt's masks (make_dropout_masks, the
    generator seeded (seed, 2)), attention dropout included, so a run with dropout is the
    NumPy twin's run to rounding; with its own masks it is not."""
    settings = {"max_iters": 12, "eval_interval": 6, "dropout": 0.2, "dtype": dtype, "n_layer": 2}
    runs = run_both(citizens_chars, tmp_path, dropout_masks="numpy", **settings)
    ours, theirs = runs["numpy"][0], runs["torch"][0]
    np.testing.assert_allclose(theirs, ours, rtol=tol, atol=0)
    own = StepLosses()
    train(tiny(citizens_chars, **settings), TokenDataset(citizens_chars), tmp_path / "own",
          factory("torch"), reporter=own)
    assert np.abs(np.array(own.losses) - ours).max() > 1e-3  # torch's own masks: another run


def test_numpy_masks_resume_bit_for_bit(citizens_chars, tmp_path):
    """The mask generator's state is checkpointed (in the NumPy twin's format): a stopped and
    resumed run with --dropout-masks numpy equals the uninterrupted one."""
    settings = {"dropout": 0.2, "dropout_masks": "numpy", "dtype": "float64", "max_iters": 10,
                "lr_decay_iters": 10}  # the cut run keeps the whole run's schedule
    data = TokenDataset(citizens_chars)
    train(tiny(citizens_chars, **settings), data, tmp_path / "whole", factory("torch"))
    train(tiny(citizens_chars, **{**settings, "max_iters": 5}), data, tmp_path / "cut",
          factory("torch"))
    state = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert state["backend_rng"]["bit_generator"] == "PCG64"
    train(tiny(citizens_chars, **settings), data, tmp_path / "cut", factory("torch"),
          resume=True)
    whole, resumed = final_params(tmp_path / "whole"), final_params(tmp_path / "cut")
    for name, value in whole.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_a_numpy_masks_run_resumes_in_the_numpy_twin(citizens_chars, tmp_path):
    """torch_gpt with --dropout-masks numpy checkpoints the NumPy twin's mask generator, so
    numpy_gpt resumes it and continues the same run: the result is numpy_gpt's own
    uninterrupted run, to float64 rounding."""
    settings = {"dropout": 0.2, "dropout_masks": "numpy", "dtype": "float64", "max_iters": 10,
                "lr_decay_iters": 10}
    data = TokenDataset(citizens_chars)
    train(tiny(citizens_chars, **settings), data, tmp_path / "whole", factory("numpy"))
    train(tiny(citizens_chars, **{**settings, "max_iters": 5}), data, tmp_path / "cut",
          factory("torch"))
    train(tiny(citizens_chars, **settings), data, tmp_path / "cut", factory("numpy"),
          resume=True)
    whole, resumed = final_params(tmp_path / "whole"), final_params(tmp_path / "cut")
    for name, value in whole.items():
        err = np.abs(resumed[name] - value).max() / np.abs(value).max()
        assert err <= 1e-10, (name, err)
