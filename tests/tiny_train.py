"""A tiny training run's settings and helpers, shared by the training, recipe and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numpy_gpt.nn.checkpoint import load_checkpoint
from numpy_gpt.training.config import TrainConfig


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
