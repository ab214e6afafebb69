"""`python -m numpy_gpt compare`: GPT-2 blocks against Llama blocks at an equal budget.

    python -m numpy_gpt compare                      # 6 variants x 3 seeds x 75 s, ~25 min
    python -m numpy_gpt compare --quick              # 2 s per run, 2 seeds: a try-out
    python -m numpy_gpt compare --variants gpt2,llama --seconds 30 --seeds 1,2

Trains GPT-2, GPT-2 + RMSNorm, + RoPE, + SwiGLU, + GQA (one change each) and the full
Llama at equal parameter count on the `shakespeare-char-cpu` preset's size, the same
training time each, several seeds, interleaved; writes OUT/compare.json, OUT/compare.md
(the table) and OUT/compare.png (the curves), and each run's record to OUT/runs/. The
method is numpy_gpt/training/compare.py's docstring; the table's, compare_report.py's.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safe_io import writing
from ..nn.blas import numpy_blas
from ..nn.runtime import keep_freed_memory
from ..training import plan
from ..training.compare import (
    RUNS_DIR,
    VARIANTS,
    CompareReporter,
    CompareSettings,
    compare,
    eval_tokens,
    param_count,
    plan_variants,
)
from ..training.compare_report import (
    JSON_FILE,
    MARKDOWN_FILE,
    PICTURE_FILE,
    summarize,
    write_report,
)
from ..training.config import DEFAULT_PRESET, TrainConfig, resolve
from ..training.machine_load import cores, cpu_model
from ..training.run_guard import lock_run
from .train import FLAGS

DEFAULT_OUT = "out/compare-llama"
# what --quick changes (each still overridden by its own flag)
QUICK = {"seconds": 2.0, "seeds": "1,2", "eval_every": 10, "eval_windows": 32,
         "full_val": False}
FULL = {"seconds": 75.0, "seeds": "1,2,3", "eval_every": 100, "eval_windows": 256,
        "full_val": True}
# train's flags that set the baseline (the rest of it is --preset's)
BASE_FLAGS = ("dataset", "data-dir", "n-layer", "n-head", "n-embd", "block-size", "batch-size",
              "learning-rate", "min-lr", "warmup-iters", "lr-decay-iters", "threads")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets to try the command: " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()
                            if k != "full_val") + ", --no-full-val")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"training time per run, evaluation not counted "
                             f"({FULL['seconds']:g})")
    parser.add_argument("--seeds", default=None,
                        help=f"comma-separated seeds, each run for every variant "
                             f"({FULL['seeds']})")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, the first is the baseline "
                             f"({','.join(VARIANTS)})")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="also stop each run after N steps (default 0: on time only)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"steps between evaluations ({FULL['eval_every']})")
    parser.add_argument("--eval-windows", type=int, default=None,
                        help=f"fixed validation windows of every evaluation "
                             f"({FULL['eval_windows']})")
    parser.add_argument("--full-val", action=argparse.BooleanOptionalAction, default=None,
                        help="also evaluate every whole window of the val split at the end "
                             "(default on; off with --quick)")
    parser.add_argument("--equal-params", action=argparse.BooleanOptionalAction, default=True,
                        help="choose each variant's MLP width so its parameter count is the "
                             "baseline's (default on)")
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"the baseline's settings ({DEFAULT_PRESET})")
    for flag in BASE_FLAGS:
        kind, text = FLAGS[flag]
        parser.add_argument(f"--{flag}", type=kind, default=None, help=text)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier comparison in --out")


def settings_from(args: argparse.Namespace) -> CompareSettings:
    chosen = QUICK if args.quick else FULL
    value = {k: chosen[k] if getattr(args, k) is None else getattr(args, k) for k in chosen}
    return CompareSettings(
        seconds=value["seconds"], seeds=int_list(value["seeds"], "--seeds"),
        variants=tuple(v.strip() for v in (args.variants or ",".join(VARIANTS)).split(",")),
        max_steps=args.max_steps or 0, eval_every=value["eval_every"],
        eval_windows=value["eval_windows"], full_val=value["full_val"],
        equal_params=args.equal_params)


def int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


def command_line(args: argparse.Namespace) -> str:
    """The command as given (its flags in a fixed order), for the report."""
    parts = ["python", "-m", "numpy_gpt", "compare"]
    for action in ("quick", "overwrite"):
        if getattr(args, action):
            parts.append(f"--{action}")
    for name in ("seconds", "seeds", "variants", "max_steps", "eval_every", "eval_windows",
                 "preset", *(f.replace("-", "_") for f in BASE_FLAGS), "out"):
        value = getattr(args, name)
        if value is not None and not (name == "preset" and value == DEFAULT_PRESET):
            parts += [f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float)
                      else str(value)]
    for name in ("full_val", "equal_params"):
        if getattr(args, name) is False:
            parts.append(f"--no-{name.replace('_', '-')}")
    return " ".join(shlex.quote(p) for p in parts)


class PrintRuns(CompareReporter):
    def start_run(self, variant: str, seed: int, index: int, total: int) -> None:
        print(f"[{index + 1}/{total}] seed {seed} {variant} ...", end=" ", flush=True)

    def end_run(self, record: dict[str, Any]) -> None:
        load, full = record["load"], record["full_val_loss"]
        others = "?" if load["others_share"] is None else f"{100 * load['others_share']:.0f} %"
        print(f"{record['steps']:,} steps in {record['train_s']:.1f} s "
              f"({record['ms_per_step']:.1f} ms/step), val {record['val_loss']:.4f}"
              + (f", full val {full:.4f}" if full is not None else "")
              + f"; load {(load['loadavg_start'] or ['?'])[0]}, others {others} of the CPU",
              flush=True)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    given = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f in BASE_FLAGS}
    base = resolve(args.preset, None, given)
    if base.gradient_accumulation_steps != 1:
        raise ValueError(f"compare takes one batch per step; --preset {args.preset} "
                         f"accumulates {base.gradient_accumulation_steps}: pick another preset")
    # the cosine's length in steps is fixed (the same for every variant); runs stop on time
    base = base.replace(lr_decay_iters=base.decay_iters, max_iters=settings.max_steps,
                        sample_tokens=0)
    out_dir = Path(args.out)
    with lock_run(out_dir, what="comparison"):
        return run_locked(args, settings, base, out_dir)


def run_locked(args: argparse.Namespace, settings: CompareSettings, base: TrainConfig,
               out_dir: Path) -> int:
    """The comparison, with out_dir locked: check, clear an earlier one, run, report."""
    report_files = [out_dir / n for n in (JSON_FILE, MARKDOWN_FILE, PICTURE_FILE)]
    earlier = ([p for p in report_files if p.exists()]
               + sorted((out_dir / RUNS_DIR).glob("*.json")))
    if earlier and not args.overwrite:
        raise ValueError(f"{out_dir} already holds a comparison; pass --overwrite to replace "
                         "it, or --out DIR for a new folder")
    dataset = plan.open_dataset(base)
    plans = plan_variants(base, dataset.vocab_size, settings)  # every variant checked first
    for p in earlier:
        with writing(p):
            p.unlink()
    blas = numpy_blas()
    windows, val_tokens = eval_tokens(settings, dataset, base.block_size)
    env = {"cpu_model": cpu_model(), "cores": cores(), "blas": blas.describe(),
           "blas_info": blas.as_dict(), "numpy": np.__version__,
           "python": platform.python_version(), "command": command_line(args),
           "dataset": str(dataset.folder), "eval_windows": windows // base.block_size,
           "eval_tokens": windows, "val_tokens": val_tokens,
           "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    print(f"{args.backend} twin: comparing {len(plans)} variants x {len(settings.seeds)} seeds "
          f"x {settings.seconds:g} s of training on {dataset.folder} ({base.n_layer}L/"
          f"{base.n_head}H/{base.n_embd}d, T={base.block_size}, B={base.batch_size}) -> "
          f"{out_dir}")
    for line in args.twin.blas_lines("python -m numpy_gpt compare ...", base.threads):
        print(line)
    print(f"machine: {env['cpu_model']}, {env['cores']} cores")
    for name, tcfg in plans.items():
        print(f"  {name:8s} {param_count(tcfg, dataset.vocab_size):>10,} parameters  "
              f"{tcfg.model_config(dataset.vocab_size).describe_arch()}")
    runs_total = len(plans) * len(settings.seeds)
    print(f"{runs_total} runs, about {runs_total * settings.seconds / 60:.1f} min of training "
          "plus evaluation", flush=True)
    keep_freed_memory()  # as train does: freed activations reused, not page-faulted back
    runs = compare(base, dataset, args.twin.train_backend, settings, out_dir, PrintRuns())
    env["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    summary = summarize(runs)
    title = (f"{base.n_layer}L/{base.n_head}H/{base.n_embd}d on {Path(base.dataset).name}, "
             f"{settings.seconds:g} s of training per run, seeds "
             f"{','.join(map(str, settings.seeds))}, numpy twin\n{env['cpu_model']}, "
             f"{env['cores']} cores, NumPy on {env['blas']}")
    written = write_report(out_dir, runs, summary, env,
                           {**settings.to_dict(), "base": base.to_dict()}, title)
    print()
    print((out_dir / MARKDOWN_FILE).read_text(), end="")
    print(f"wrote {', '.join(map(str, written))} and {len(runs)} run records in "
          f"{out_dir / RUNS_DIR}")
    return 0

