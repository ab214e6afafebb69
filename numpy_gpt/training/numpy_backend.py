"""NumpyBackend: numpy_gpt's GPT + AdamW behind the training loop's Backend protocol.

    result = train(tcfg, dataset, out_dir, numpy_backend)   # train from numpy_gpt.training.train

The loop (train.py) is written once for both twins and knows nothing about arrays; this is
the NumPy twin's side of it (the torch twin's is torch_gpt/train.py's TorchBackend):
forward+backward with gradient accumulation, grad-norm clipping folded into the AdamW update,
the dropout generator whose state each checkpoint keeps, and checkpoint I/O. `numpy_backend`
is the BackendFactory handed to the loop; `numpy_model` builds the model a run trains (seeded,
or a checkpoint's weights), and finetune.py's LoRA backend reuses it.

Deliberately omits: the loop, evaluation, the schedule and the log (train.py); LoRA's
adapters-only optimizer (finetune.py's LoRANumpyBackend subclasses this class); data
parallelism across processes (all_reduce_mean is the identity: the cores are shared out
inside one process, nn/parallel.py).
Ref: nanoGPT train.py (the step: accumulate micro-batches, clip, optimizer step, zero grads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import rng_from_state, rng_state
from ..nn import checkpoint as ckpt
from ..nn.config import GPTConfig
from ..nn.model import GPT
from ..nn.optim import AdamW, clip_coef, grad_norm
from ..nn.parallel import ShardedStep
from .config import TrainConfig


class NumpyBackend:
    """numpy_gpt's GPT + AdamW behind the Backend protocol. On the CPU each batch is split
    over the cores (parallel.ShardedStep); on a GPU (CuPy) it runs whole. Dropout masks come
    from a seeded host Generator whose state is checkpointed."""

    name = "numpy"
    is_main = True

    def __init__(self, model: GPT, tcfg: TrainConfig):
        self.model, self.config, self.tcfg = model, model.config, tcfg
        self.opt = AdamW(model.params, lr=tcfg.learning_rate, betas=(tcfg.beta1, tcfg.beta2),
                         weight_decay=tcfg.weight_decay)
        self.rng = np.random.default_rng([tcfg.seed, 2])  # dropout masks
        self.grads: dict[str, np.ndarray] | None = None
        self.sharded = ShardedStep(model, tcfg.threads)

    def forward_backward(self, x: np.ndarray, y: np.ndarray, scale: float) -> float:
        loss, grads = self.sharded.forward_backward(
            x, y, dloss=scale, label_smoothing=self.tcfg.label_smoothing, train=True,
            rng=self.rng)
        if self.grads is None:
            self.grads = grads
        else:  # gradient accumulation: the mean over micro-batches (each scaled by 1/n)
            for k, g in grads.items():
                self.grads[k] += g
        return loss

    def step(self, lr: float, grad_clip: float) -> float:
        assert self.grads is not None, "step() before forward_backward()"
        norm, coef = float("nan"), 1.0
        if grad_clip > 0:  # clipping's scale is applied inside the update (no extra pass)
            norm = grad_norm(self.grads)
            coef = clip_coef(norm, grad_clip)
        self.opt.step(self.grads, lr, grad_scale=coef)
        self.grads = None
        return norm

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.sharded.loss(x, y)

    def save(self, path: Path, tokenizer: Any, trainer_state: dict | None) -> None:
        self.model.save(path, tokenizer=tokenizer, trainer_state=trainer_state,
                        optimizer_state=self.opt.state_dict() if trainer_state else None,
                        write_extra=self.write_extra)

    def write_extra(self, folder: Path) -> None:
        """More files for a checkpoint, written into its temporary folder before the swap
        (LoRA's adapter/), so the folder is all of one step or none of it."""

    def load_optimizer(self, path: Path) -> None:
        self.opt.load_state_dict(ckpt.load_optimizer_state(path))

    def rng_state(self) -> Any:
        return rng_state(self.rng)

    def set_rng_state(self, state: Any) -> None:
        self.rng = rng_from_state(state)

    def all_reduce_mean(self, value: float) -> float:
        return value


def numpy_model(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> GPT:
    """The model a run trains: seeded from scratch, or a checkpoint folder's weights under
    `config` (the stored shapes; this run's dropout)."""
    device = numpy_device(tcfg.device)
    if init is None:
        return GPT(config, dtype=tcfg.dtype, seed=tcfg.seed, device=device)
    _, params, _ = ckpt.load_checkpoint(init)
    return GPT.from_params(config, params, tcfg.dtype, device)


def numpy_device(device: str) -> str:
    """The NumPy twin's device for a TrainConfig.device: "auto" is the CPU (CuPy is opt-in)."""
    if device in ("auto", "cpu", "cuda"):
        return "cpu" if device == "auto" else device
    raise ValueError(f"the numpy twin runs on device cpu or cuda (CuPy), not {device!r}")


def numpy_backend(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> NumpyBackend:
    """Build the NumPy backend from scratch (seeded) or from a checkpoint folder's weights."""
    return NumpyBackend(numpy_model(tcfg, config, init), tcfg)
