"""A tiny training run's settings and helpers, shared by the training, recipe and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numpy_gpt.nn.checkpoint import load_checkpoint
from numpy_gpt.training.config import TrainConfig
from numpy_gpt.training.train import Reporter


def tiny(data: Path, **changes) -> TrainConfig:
    """A 1-layer, 16-wide model on `data` for 20 iterations, evaluated every 5; `changes`
    override any TrainConfig field."""
    settings = {"dataset": str(data), "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                "batch_size": 4, "max_iters": 20, "eval_interval": 5, "eval_iters": 2,
                "warmup_iters": 2, "learning_rate": 3e-3, "min_lr": 3e-4, "sample_tokens": 0,
                "dropout": 0.1, "gradient_accumulation_steps": 2}
    settings.update(changes)
    return TrainConfig(**settings)


def factory(name: str):
    """The training backend factory of the twin called `name` (torch: skipped without it)."""
    if name != "numpy":
        pytest.importorskip("torch")
    from conftest import twin_named

    return twin_named(name).train_backend


def final_params(out: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(out / "last")[1]


class StopDuring(Reporter):
    """A stop signal's flag that turns true at its k-th look once step n is done. The loop
    looks at the top of each iteration (look 1), before each evaluation batch (tiny's 2 per
    split: looks 2-5 at an evaluated iteration) and before each micro-batch but the first."""

    def __init__(self, n: int, k: int) -> None:
        self.n, self.k, self.looks = n, k, None

    def step(self, it: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if it == self.n:
            self.looks = 0

    def __call__(self) -> bool:
        if self.looks is None:
            return False
        self.looks += 1
        return self.looks >= self.k
