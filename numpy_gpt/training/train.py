"""The training loop, written once for both twins.

    for it in start..max_iters:
        every eval_interval (and at max_iters): estimate train/val loss, log, checkpoint
        lr = schedule(it): warmup, then cosine (or cosine with warm restarts)
        repeat gradient_accumulation_steps: batch -> forward+backward (loss / n_micro)
        clip the global grad norm; AdamW step

The loop knows nothing about arrays: a Backend (numpy_backend.py's NumpyBackend,
torch_gpt.train's TorchBackend) does forward/backward, the optimizer step and checkpoint I/O.
Everything that makes a run reproducible lives here: batches come from a seeded
np.random.Generator whose state is saved in each checkpoint with the backend's dropout RNG,
the optimizer moments and the iteration, so `resume` continues bit-identically. Evaluation draws from its own fixed
generator, so it never perturbs the training stream (unlike nanoGPT's shared global RNG).

Checkpoints: OUT/last (every evaluation, and on interrupt) and OUT/best (lowest val loss).
`should_stop` (a stop signal) is looked at before every batch, evaluation batches and
micro-batches included, so a stop never waits for a whole evaluation or step: the unfinished
one is dropped and last/ gets the last completed step, generators included (resume redoes the
dropped work bit-identically).
A non-finite loss stops the run before anything is written, so last/ stays the last good
state. A write that fails (a full disk: safe_io.WriteError) stops the run with a TrainingError
naming the file, the cause and the iteration last/ still holds; a checkpoint's log record is
kept in its trainer state, so a log line lost that way comes back on resume. Library code:
progress and messages go through a Reporter; the CLI prints them.

Ref: nanoGPT train.py (loop, estimate_loss, get_lr).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..data.dataset import TokenDataset, rng_from_state, rng_state
from ..files.safe_io import WriteError, append_line, save_figure, write_text_atomic, writing
from ..nn import checkpoint as ckpt
from ..nn.config import GPTConfig
from ..nn.optim import get_lr, get_lr_restarts
from .config import TrainConfig
from .diagnostics import StepProbe, probe_due
from .estimate import estimate_line, time_forward

LOG_FILE = "log.jsonl"


class TrainingError(RuntimeError):
    """The run cannot go on (diverged); the message says what is kept and what to change."""


class Backend(Protocol):
    name: str
    config: GPTConfig
    is_main: bool  # the process that writes files (rank 0 under data parallel)

    def forward_backward(self, x: np.ndarray, y: np.ndarray, scale: float) -> float: ...
    def step(self, lr: float, grad_clip: float) -> float: ...
    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float: ...
    def save(self, path: Path, tokenizer: Any, trainer_state: dict | None) -> None: ...
    def load_optimizer(self, path: Path) -> None: ...
    def rng_state(self) -> Any: ...
    def set_rng_state(self, state: Any) -> None: ...
    def all_reduce_mean(self, value: float) -> float: ...
    # optional: close() -> None, called once when training ends (e.g. to leave DDP)


class Reporter:
    """Where the loop's progress goes. The default says nothing (library code is silent)."""

    def start(self, total: int, initial: int) -> None: ...
    def step(self, it: int, loss: float, lr: float, tokens_per_s: float) -> None: ...
    def evaluation(self, record: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class TrainResult:
    out_dir: Path
    iter: int
    best_val_loss: float
    status: str  # "done" | "early_stopped" | "interrupted"
    log: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0  # training time in all, earlier sessions of a resumed run included


# ---------------------------------------------------------------------------- the loop

BackendFactory = Callable[[TrainConfig, GPTConfig, "Path | None"], Backend]


def train(
    tcfg: TrainConfig,
    dataset: TokenDataset,
    out_dir: Path,
    make_backend: BackendFactory,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    time_estimate: bool = False,
) -> TrainResult:
    """Train per `tcfg` on `dataset`, writing checkpoints and the log under out_dir.
    `time_estimate`: before anything runs, time one forward pass and tell the reporter what a
    step, an evaluation and the run will take (estimate.py)."""
    rep = reporter or Reporter()
    tokenizer = dataset.tokenizer()
    last, best = out_dir / "last", out_dir / "best"
    state: dict[str, Any] = {}
    if resume:
        state = ckpt.load_trainer_state(last)
        model_cfg = GPTConfig.from_dict(ckpt.read_meta(last)["model"])
        backend = make_backend(tcfg, model_cfg.replace(dropout=tcfg.dropout), last)
        backend.load_optimizer(last)
        backend.set_rng_state(state["backend_rng"])
        batch_rng = rng_from_state(state["batch_rng"])
    else:
        init = Path(tcfg.init_from) if tcfg.init_from else None
        model_cfg = tcfg.model_config(dataset.vocab_size)
        if init is not None:
            stored = GPTConfig.from_dict(ckpt.read_meta(init)["model"])
            check_vocab(stored.vocab_size, dataset.vocab_size, init)
            model_cfg = stored.replace(dropout=tcfg.dropout)
        backend = make_backend(tcfg, model_cfg, init)
        batch_rng = np.random.default_rng([tcfg.seed, 0, rank_of(backend)])
    check_vocab(backend.config.vocab_size, dataset.vocab_size, last if resume else None)
    if backend.config.block_size < tcfg.block_size:
        raise ValueError(f"--block-size {tcfg.block_size} exceeds the model's block_size "
                         f"{backend.config.block_size}")

    start = int(state.get("iter", 0))
    best_val = float(state.get("best_val_loss", math.inf))
    evals_since_best = int(state.get("evals_since_best", 0))
    skip_eval_at_start = bool(state.get("evaluated", False))
    log = read_log(out_dir, upto=start if resume else -1)
    if resume and state.get("record") and (not log or log[-1]["iter"] != start):
        log.append(state["record"])  # the checkpoint was saved but its log line was not
    saved_at: int | None = start if resume else None  # the iteration last/ holds, intact

    def write_fault(e: WriteError) -> TrainingError:
        """The one line for a write that failed (disk full): the file, why, what is safe."""
        if saved_at is None:
            safe = "no checkpoint was saved yet; free space and start again (--overwrite)"
        else:
            safe = (f"the checkpoint at iteration {saved_at} in {last} is intact; free space "
                    f"and run with --resume --out {out_dir}")
        return TrainingError(str(e.with_advice(safe)))

    if backend.is_main:
        try:
            with writing(out_dir):
                out_dir.mkdir(parents=True, exist_ok=True)
            write_log(out_dir, log)
        except WriteError as e:
            raise write_fault(e) from None
    if time_estimate and start < tcfg.max_iters:
        rep.message(estimate_line(tcfg, time_forward(backend, dataset, tcfg), start))
    B, T, n_micro = tcfg.batch_size, tcfg.block_size, tcfg.gradient_accumulation_steps
    elapsed0 = float(state.get("elapsed_s", 0.0))
    t_start = time.perf_counter()

    def trainer_state(it: int, record: dict | None) -> dict[str, Any]:
        return {"iter": it, "evaluated": record is not None, "best_val_loss": best_val,
                "evals_since_best": evals_since_best, "batch_rng": rng_state(batch_rng),
                "backend_rng": backend.rng_state(), "backend": backend.name,
                "elapsed_s": elapsed0 + time.perf_counter() - t_start,
                "train_config": tcfg.to_dict(), "record": record}

    def generator_states() -> dict[str, Any]:
        return {"batch_rng": rng_state(batch_rng), "backend_rng": backend.rng_state()}

    def save_stopped(it: int, at_start: dict[str, Any]) -> None:
        """A stop signal: last/ gets iteration `it` as it stood before its unfinished work
        (an evaluation cut short, or the micro-batches of a step not taken), with the random
        generators as they were then, so --resume redoes that work bit-identically. Nothing
        to write when last/ holds `it` already (its evaluation's checkpoint, or the resume's
        own): the parameters, moments and generators have not moved since."""
        nonlocal saved_at
        if backend.is_main and saved_at != it:
            backend.save(last, tokenizer, {**trainer_state(it, None), **at_start})
            saved_at = it

    rep.start(tcfg.max_iters, start)
    status, it = "done", start
    diag: dict = {}  # gradient norms and update/weight ratios (diagnostics.py)
    try:
        for it in range(start, tcfg.max_iters + 1):
            # Stop signals are looked at between batches: here, between evaluation batches and
            # between micro-batches. A stop drops the unfinished evaluation or step and keeps
            # the last completed one (save_stopped), so it never waits for a whole evaluation.
            at_start = generator_states()  # evaluation draws from neither generator
            if should_stop():
                save_stopped(it, at_start)
                status = "interrupted"
                break
            eval_due = it % tcfg.eval_interval == 0 or it == tcfg.max_iters
            if eval_due and not (it == start and skip_eval_at_start):
                losses = {s: estimate_loss(backend, dataset, s, tcfg, should_stop)
                          for s in ("train", "val")}
                if None in losses.values():  # stopped: this evaluation is dropped, unlogged
                    save_stopped(it, at_start)
                    status = "interrupted"
                    break
                improved = losses["val"] < best_val
                if improved:
                    best_val, evals_since_best = losses["val"], 0
                else:
                    evals_since_best += 1
                record = {"iter": it, "train_loss": losses["train"], "val_loss": losses["val"],
                          "val_ppl": math.exp(min(losses["val"], 700.0)),
                          "lr": lr_at(it, tcfg),
                          "elapsed_s": round(elapsed0 + time.perf_counter() - t_start, 3),
                          "best": improved, **diag}  # diag: the step just before (if any)
                if backend.is_main:  # checkpoint first, then the log line that refers to it
                    backend.save(last, tokenizer, trainer_state(it, record))
                    saved_at = it
                    if improved:
                        backend.save(best, tokenizer, None)
                    log.append(record)
                    append_log(out_dir, record)
                rep.evaluation(record)
                if tcfg.patience and evals_since_best >= tcfg.patience:
                    status = "early_stopped"
                    rep.message(f"early stopping at iter {it}: val loss has not improved for "
                                f"{tcfg.patience} evaluations (best {best_val:.4f})")
                    break
            if it == tcfg.max_iters:
                break

            t0 = time.perf_counter()
            lr = lr_at(it, tcfg)
            loss, done_micro = 0.0, 0
            while done_micro < n_micro:
                if done_micro and should_stop():  # the step's gradients so far are dropped
                    break
                x, y = dataset.get_batch("train", B, T, batch_rng, loss_on=tcfg.loss_on)
                micro = backend.forward_backward(x, y, 1.0 / n_micro)
                if not math.isfinite(micro):
                    raise TrainingError(
                        f"loss became {micro} at iter {it}; stopped without saving, so "
                        f"{last} keeps the last good state. Lower --learning-rate or "
                        "--grad-clip and resume")
                loss += micro / n_micro
                done_micro += 1
            if done_micro < n_micro:
                save_stopped(it, at_start)
                status = "interrupted"
                break
            probe = StepProbe(backend) if probe_due(it + 1, tcfg.eval_interval,
                                                    tcfg.max_iters) else None
            backend.step(lr, tcfg.grad_clip)
            diag = probe.finish() if probe is not None else {}
            dt = time.perf_counter() - t0
            rep.step(it + 1, loss, lr, B * T * n_micro / max(dt, 1e-9))
    except WriteError as e:
        raise write_fault(e) from None
    finally:
        rep.close()
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return TrainResult(out_dir, it, best_val, status, log,
                       elapsed_s=elapsed0 + time.perf_counter() - t_start)


def estimate_loss(backend: Backend, dataset: TokenDataset, split: str, tcfg: TrainConfig,
                  should_stop: Callable[[], bool] = lambda: False) -> float | None:
    """Mean loss over eval_iters batches of a split, from a generator fixed per split, so
    every evaluation sees the same batches and training batches are untouched. None when
    `should_stop` turns true before the last batch (a stop signal: the estimate is dropped)."""
    rng = np.random.default_rng([tcfg.seed, 1, 0 if split == "train" else 1])
    losses = []
    for _ in range(tcfg.eval_iters):
        if should_stop():
            return None
        x, y = dataset.get_batch(split, tcfg.batch_size, tcfg.block_size, rng,
                                 loss_on=tcfg.loss_on)
        losses.append(backend.eval_loss(x, y))
    return backend.all_reduce_mean(float(np.mean(losses)))


def lr_at(it: int, tcfg: TrainConfig) -> float:
    """The learning rate of iteration `it` under the run's --lr-schedule (optim.py)."""
    if tcfg.lr_schedule == "cosine-restarts":
        return get_lr_restarts(it, learning_rate=tcfg.learning_rate,
                               warmup_iters=tcfg.warmup_iters,
                               restart_period=tcfg.lr_restart_period,
                               restart_mult=tcfg.lr_restart_mult or 1, min_lr=tcfg.min_lr)
    return get_lr(it, learning_rate=tcfg.learning_rate, warmup_iters=tcfg.warmup_iters,
                  lr_decay_iters=tcfg.decay_iters, min_lr=tcfg.min_lr)


def check_vocab(model_vocab: int, data_vocab: int, where: Path | None) -> None:
    if model_vocab < data_vocab:
        raise ValueError(
            f"checkpoint {where} has vocab_size {model_vocab} but the dataset's tokenizer has "
            f"{data_vocab} tokens; use a checkpoint trained with this tokenizer")


def rank_of(backend: Backend) -> int:
    return int(getattr(backend, "rank", 0))


# ---------------------------------------------------------------------------- log.jsonl


def read_log(out_dir: Path, upto: int) -> list[dict]:
    """Records with iter <= upto (a resume drops lines past its checkpoint); upto < 0: none.
    A torn last line (a process killed in the middle of writing it) is dropped."""
    path = out_dir / LOG_FILE
    if upto < 0 or not path.is_file():
        return []
    records = []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(f"{path} line {n} is not JSON; the log is damaged (move it "
                                 "aside to resume without it)") from None
    return [r for r in records if r["iter"] <= upto]


def write_log(out_dir: Path, records: list[dict]) -> None:
    """The whole log, replaced atomically (a full disk leaves the old one)."""
    write_text_atomic(out_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in records))


def append_log(out_dir: Path, record: dict) -> None:
    append_line(out_dir / LOG_FILE, json.dumps(record))


def plot_log(records: list[dict], path: Path, title: str = "") -> bool:
    """loss.png: train and val loss against iteration; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    its = [r["iter"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(its, [r["train_loss"] for r in records], marker=".", label="train")
    ax.plot(its, [r["val_loss"] for r in records], marker=".", label="val")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)  # a write fault: safe_io.WriteError, the old loss.png kept
    return True
