"""GPT-2 blocks against Llama blocks at an equal budget: `python -m numpy_gpt compare`.

    settings = CompareSettings(seconds=75, seeds=(1, 2, 3))
    runs = compare(base, dataset, numpy_backend, settings, out_dir)   # one record per run
    # compare_report.summarize(runs) -> val loss at equal time and at equal steps per variant

What each Llama change buys, one at a time on top of GPT-2 and all together:

    gpt2      the baseline (LayerNorm, learned positions, GELU MLP of 4C, tied head)
    rmsnorm   + RMSNorm instead of LayerNorm
    rope      + rotary positions instead of the wpe table
    swiglu    + a SwiGLU MLP instead of GELU's
    gqa       + grouped-query attention, n_head/2 key/value heads
    llama     --arch llama: all four, no biases, an untied head

Equal parameter count: every variant's MLP width F (ffn_hidden) is chosen so that its
parameter count is the closest to the first variant's (the baseline's): RoPE drops the wpe
table, GQA drops K/V rows of c_attn, SwiGLU has three matrices instead of two, and the full
Llama adds an untied head; the MLP takes up the difference (F = 512, 520, 341, 576, 384 at
4L/4H/128d with 65 characters). The counts are in every run's record.

Equal budget: each run trains for the same `seconds` of training time (the clock runs during
batches, forward, backward and the AdamW step; it stops during evaluation), so a variant
that steps faster gets more steps. Every variant of a seed starts from that seed and draws
the same training batches (np.random.default_rng([seed, 0, 0]), as the train loop), and the
learning rate follows the same schedule in steps (warmup, cosine to min_lr at
lr_decay_iters, then flat), so at equal steps the variants differ only in their blocks.
Runs are interleaved: seed 1 of every variant, then seed 2, ..., so a change in the machine's
load hits every variant alike; each run records the load average and other processes' CPU
(machine_load.py).

Evaluation: every `eval_every` steps, at step 0 and when the budget runs out, on one fixed
set of validation windows (`eval_windows` windows of block_size tokens spread evenly over
the val split), the same for every variant, seed and step; at the end, optionally on every
whole window of the val split. The evaluation's time is not charged to the budget.

Deliberately omits: gradient accumulation and dropout (the comparison preset has neither),
checkpoints (the runs are measurements, kept as JSON records under out/), a time-based
learning-rate schedule (it would make a seed's run depend on the machine's speed).

Ref: Touvron et al. 2023 (Llama 2), Shazeer 2020 (GLU variants), Su et al. 2021 (RoPE),
Ainslie et al. 2023 (GQA), Zhang & Sennrich 2019 (RMSNorm).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import TokenDataset
from ..files.safe_io import write_text_atomic, writing
from ..nn.config import param_shapes
from .config import TrainConfig
from .machine_load import LoadMeter
from .train import Backend, BackendFactory, TrainingError, lr_at

# name -> the legend's label; the changes each makes to the baseline are variant_changes'
VARIANTS = {
    "gpt2": "GPT-2",
    "rmsnorm": "+ RMSNorm",
    "rope": "+ RoPE",
    "swiglu": "+ SwiGLU",
    "gqa": "+ GQA",
    "llama": "Llama (all four)",
}
EVAL_CHUNK = 64  # validation windows per forward pass
RUNS_DIR = "runs"  # OUT/runs/<variant>-seed<seed>.json, one file per finished run
WARM_UP_STEPS = 3  # untimed steps before the first run (warm_up)


def variant_changes(name: str, n_head: int) -> dict[str, Any]:
    """The TrainConfig fields variant `name` sets on top of the baseline."""
    return {"gpt2": {}, "rmsnorm": {"norm": "rmsnorm"}, "rope": {"position": "rope"},
            "swiglu": {"mlp": "swiglu"}, "gqa": {"n_kv_head": max(n_head // 2, 1)},
            "llama": {"arch": "llama"}}[name]


@dataclass(frozen=True)
class CompareSettings:
    seconds: float = 75.0  # training time per run
    seeds: tuple[int, ...] = (1, 2, 3)
    variants: tuple[str, ...] = tuple(VARIANTS)
    max_steps: int = 0  # also stop a run after this many steps; 0 = on time only
    eval_every: int = 100  # steps between evaluations on the fixed windows
    eval_windows: int = 256  # validation windows of the curves and both comparison points
    full_val: bool = True  # also evaluate every whole window of the val split at the end
    equal_params: bool = True  # match every variant's parameter count via its MLP width

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"--seconds must be > 0, got {self.seconds}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, got {list(self.seeds)}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"--variants must be distinct names among {', '.join(VARIANTS)}, "
                             f"got {','.join(self.variants)}")
        for name, least in (("max_steps", 0), ("eval_every", 1), ("eval_windows", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got "
                                 f"{getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def param_count(tcfg: TrainConfig, vocab_size: int) -> int:
    return sum(math.prod(s) for s in param_shapes(tcfg.model_config(vocab_size)).values())


def with_params(tcfg: TrainConfig, vocab_size: int, target: int) -> TrainConfig:
    """tcfg with the MLP width whose parameter count is closest to `target` (the count is
    linear in F: F·C per MLP matrix and F per bias, in every layer)."""
    f0 = tcfg.model_config(vocab_size).ffn_width
    p0 = param_count(tcfg.replace(ffn_hidden=f0), vocab_size)
    per_unit = param_count(tcfg.replace(ffn_hidden=f0 + 1), vocab_size) - p0
    width = round(f0 + (target - p0) / per_unit)
    if width < 1:
        raise ValueError(f"no MLP width gives {target:,} parameters (the rest of the model "
                         "has more); compare at a larger --n-embd")
    return tcfg.replace(ffn_hidden=width)


def plan_variants(base: TrainConfig, vocab_size: int, settings: CompareSettings
                  ) -> dict[str, TrainConfig]:
    """name -> the run's settings (seed still the base's), every one checked before any run."""
    plans = {}
    for name in settings.variants:
        tcfg = base.replace(**variant_changes(name, base.n_head))
        if settings.equal_params and plans:
            first = next(iter(plans.values()))
            tcfg = with_params(tcfg, vocab_size, param_count(first, vocab_size))
        plans[name] = tcfg
    return plans


# ---------------------------------------------------------------------------- evaluation


def val_windows(tokens: np.ndarray, T: int, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of n windows of T tokens (and their next tokens) spread evenly over a split;
    n None, or at least the number of whole windows: every whole window, back to back (the
    full split but for a last piece shorter than T)."""
    whole = (len(tokens) - 1) // T
    if whole < 1:
        raise ValueError(f"the val split has {len(tokens)} tokens, fewer than block_size + 1 = "
                         f"{T + 1}; use a smaller --block-size")
    if n is None or n >= whole:
        starts = np.arange(whole, dtype=np.int64) * T
    else:
        starts = np.linspace(0, len(tokens) - T - 1, n).round().astype(np.int64)
    windows = np.asarray(tokens[starts[:, None] + np.arange(T + 1)], dtype=np.int64)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


def mean_loss(backend: Backend, x: np.ndarray, y: np.ndarray) -> float:
    """The mean loss over every window (all are whole, so windows weigh alike)."""
    total = 0.0
    for s in range(0, len(x), EVAL_CHUNK):
        part = slice(s, s + EVAL_CHUNK)
        total += backend.eval_loss(x[part], y[part]) * len(x[part])
    return total / len(x)


# ---------------------------------------------------------------------------- one run


def train_for(tcfg: TrainConfig, dataset: TokenDataset, make_backend: BackendFactory,
              settings: CompareSettings, eval_set: tuple[np.ndarray, np.ndarray],
              full_set: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
    """Train one variant and seed until `settings.seconds` of training time (or max_steps)
    are spent; its record: the curve at every evaluation, the final point, the load."""
    meter = LoadMeter()
    t_wall = time.perf_counter()
    config = tcfg.model_config(dataset.vocab_size)
    backend = make_backend(tcfg, config, None)
    batch_rng = np.random.default_rng([tcfg.seed, 0, 0])  # the train loop's stream, rank 0
    B, T = tcfg.batch_size, tcfg.block_size
    step, clock, since = 0, 0.0, []  # since: training losses since the last evaluation

    def point() -> dict[str, Any]:
        return {"step": step, "time_s": round(clock, 4),
                "val_loss": mean_loss(backend, *eval_set),
                "train_loss": float(np.mean(since)) if since else None}

    curve = [point()]
    while clock < settings.seconds and not (settings.max_steps and step >= settings.max_steps):
        t0 = time.perf_counter()
        x, y = dataset.get_batch("train", B, T, batch_rng)
        loss = backend.forward_backward(x, y, 1.0)
        if not math.isfinite(loss):
            raise TrainingError(f"loss became {loss} at step {step} of {tcfg.seed=} "
                                f"({config.describe_arch()}); lower --learning-rate")
        backend.step(lr_at(step, tcfg), tcfg.grad_clip)
        clock += time.perf_counter() - t0
        step += 1
        since.append(loss)
        if step % settings.eval_every == 0:
            curve.append(point())
            since = []
    if curve[-1]["step"] != step:
        curve.append(point())
    full = mean_loss(backend, *full_set) if full_set is not None else None
    close(backend)
    return {"seed": tcfg.seed, "params": param_count(tcfg, dataset.vocab_size),
            "ffn_hidden": config.ffn_width, "arch": config.describe_arch(),
            "steps": step, "train_s": round(clock, 3),
            "ms_per_step": round(1e3 * clock / max(step, 1), 3),
            "val_loss": curve[-1]["val_loss"], "full_val_loss": full,
            "wall_s": round(time.perf_counter() - t_wall, 3), "load": meter.finish(),
            "curve": curve}


def close(backend: Backend) -> None:
    """The backend's optional close() (the Backend protocol), once its run is over."""
    finish = getattr(backend, "close", None)
    if finish is not None:
        finish()


# ---------------------------------------------------------------------------- all runs


class CompareReporter:
    """Where compare's progress goes; the default says nothing (library code is silent)."""

    def start_run(self, variant: str, seed: int, index: int, total: int) -> None: ...
    def end_run(self, record: dict[str, Any]) -> None: ...


def compare(base: TrainConfig, dataset: TokenDataset, make_backend: BackendFactory,
            settings: CompareSettings, out_dir: Path,
            reporter: CompareReporter | None = None) -> list[dict[str, Any]]:
    """Every variant for every seed, interleaved (seed 1 of each variant, then seed 2, ...);
    each finished run's record is written to OUT/runs/ at once and returned in order."""
    if dataset.layout != "stream":
        raise ValueError(f"compare trains on a token stream (e.g. shakespeare_char); "
                         f"{dataset.folder} holds examples")
    rep = reporter or CompareReporter()
    plans = plan_variants(base, dataset.vocab_size, settings)
    val = dataset.tokens("val")
    eval_set = val_windows(val, base.block_size, settings.eval_windows)
    full_set = val_windows(val, base.block_size, None) if settings.full_val else None
    warm_up(next(iter(plans.values())), dataset, make_backend)
    runs, total = [], len(settings.seeds) * len(plans)
    with writing(out_dir / RUNS_DIR):
        (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    for seed in settings.seeds:
        for name, tcfg in plans.items():
            rep.start_run(name, seed, len(runs), total)
            record = {"variant": name, **train_for(tcfg.replace(seed=seed), dataset,
                                                   make_backend, settings, eval_set, full_set)}
            write_text_atomic(out_dir / RUNS_DIR / f"{name}-seed{seed}.json",
                              json.dumps(record, indent=1) + "\n")
            runs.append(record)
            rep.end_run(record)
    return runs


def warm_up(tcfg: TrainConfig, dataset: TokenDataset, make_backend: BackendFactory,
            steps: int = WARM_UP_STEPS) -> None:
    """A few untimed steps of a throwaway model, so the process's first-time costs (thread
    pools, the allocator's first pages, BLAS's buffers) land on no variant's clock."""
    backend = make_backend(tcfg, tcfg.model_config(dataset.vocab_size), None)
    rng = np.random.default_rng([tcfg.seed, 3])
    for _ in range(steps):
        backend.forward_backward(*dataset.get_batch("train", tcfg.batch_size,
                                                    tcfg.block_size, rng), 1.0)
        backend.step(tcfg.min_lr, tcfg.grad_clip)
    close(backend)


def eval_tokens(settings: CompareSettings, dataset: TokenDataset, T: int) -> tuple[int, int]:
    """(tokens in the fixed evaluation windows, tokens of the val split) for the report."""
    whole = (dataset.num_tokens("val") - 1) // T
    return min(settings.eval_windows, whole) * T, dataset.num_tokens("val")
