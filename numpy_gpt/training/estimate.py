"""How long a training step and an evaluation will take, said before the run starts.

    forward_s = time_forward(backend, dataset, tcfg)   # one batch's forward, timed
    estimate_line(tcfg, forward_s, start)              # "time estimate: ~0.37 s a step, ..."

The first evaluation comes before any step, and on a CPU a large preset's can take many
minutes, which used to start without a word. So before it, the loop times the unit of an
evaluation: one forward pass of the real model on one real batch (B x T of the run, from a
generator of its own, so the batches and dropout masks of the run are untouched; the second
of two calls, so allocation, thread start-up or torch.compile's tracing are not counted). An
evaluation is 2 x eval_iters of them; a training step is about three (the backward costs
twice the forward in FLOPs: measured 2.7-2.8x with the optimizer at 4L/128d and 6L/384d on
this project's 2-core CPU) per micro-batch. The cost is two forward passes, a fraction of
one step; the progress bar's own estimate, from timed steps, takes over once the run goes.

Chosen over a FLOP count at a measured matmul rate, which was cheaper but 3-4x off at small
and medium sizes (a twin shards small matmuls over the cores, where one timed matmul does not).
Deliberately omits: data loading and checkpoint writes (both small next to the compute).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..data.dataset import TokenDataset
from .config import TrainConfig

STEP_FORWARDS = 3.0  # a step's forward + backward in forwards' time (module docstring)


def time_forward(backend: Any, dataset: TokenDataset, tcfg: TrainConfig) -> float:
    """Seconds of one evaluation batch's forward (backend.eval_loss), the second of two."""
    rng = np.random.default_rng([tcfg.seed, 3])  # its own: the run's generators untouched
    x, y = dataset.get_batch("train", tcfg.batch_size, tcfg.block_size, rng,
                             loss_on=tcfg.loss_on)
    backend.eval_loss(x, y)  # warm-up: allocations, threads, compilation
    t0 = time.perf_counter()
    backend.eval_loss(x, y)
    return time.perf_counter() - t0


def duration(seconds: float) -> str:
    """'45 ms', '0.41 s', '12 s', '6.5 min', '2.1 h'."""
    if seconds < 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def estimate_line(tcfg: TrainConfig, forward_s: float, start: int) -> str:
    """The line printed before the run: a step, an evaluation, and what is left of the run."""
    step_s = STEP_FORWARDS * forward_s * tcfg.gradient_accumulation_steps
    eval_s = forward_s * tcfg.eval_iters * 2
    steps = tcfg.max_iters - start
    evals = sum(1 for it in range(start, tcfg.max_iters + 1)  # the loop's own rule
                if it % tcfg.eval_interval == 0 or it == tcfg.max_iters)
    total = step_s * steps + eval_s * evals
    return (f"time estimate: ~{duration(step_s)} a step, ~{duration(eval_s)} an evaluation "
            f"({tcfg.eval_iters} batch{'es' if tcfg.eval_iters != 1 else ''} x 2 splits), "
            f"~{duration(total)} for {steps:,} steps "
            f"and {evals} evaluations (from one timed forward of {duration(forward_s)})")
