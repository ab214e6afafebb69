"""`python -m numpy_gpt train` / `python -m torch_gpt train`: flags, output folder, progress.

With no arguments it trains the `shakespeare-char-cpu` preset on Tiny Shakespeare, prints
evaluations as it goes, saves checkpoints and loss.png under out/, and prints a sample.
Ctrl-C, SIGTERM or SIGHUP saves OUT/last and exits with 128 + the signal's number; `--resume`
continues from it bit-identically. One run at a time holds OUT (OUT/.lock), and a full disk
ends the run with one line saying which checkpoint is intact (numpy_gpt.training.run_guard,
numpy_gpt.files.safe_io). Before anything is written the run is resolved and checked
(numpy_gpt.training.plan: what may change on resume, --init-from's shape and tokenizer, the
dataset, memory) and printed; progress is numpy_gpt.training.progress.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..files.safe_io import WriteError
from ..generation.sampler import sample_text
from ..nn.runtime import keep_freed_memory
from ..training import plan
from ..training.config import DEFAULT_PRESET, PRESETS, TrainConfig, read_settings_file, resolve
from ..training.diagnostics import plot_training
from ..training.progress import ConsoleReporter
from ..training.run_guard import Aborted, StopFlag, aborted_line, lock_run
from ..training.train import (
    LOG_FILE,
    Reporter,
    TrainingError,
    plot_log,
    train,
)
from ..twin import Twin

# flag -> (type, help); names are nanoGPT's, in kebab-case. Defaults come from TrainConfig.
FLAGS: dict[str, tuple[Any, str]] = {
    "dataset": (str, ("named dataset (shakespeare_char, shakespeare, tinystories, instruct, "
                     "dialogue) or a folder made by `prepare`")),
    "tokenizer": (str, "a named dataset's tokenizer: char, word, bpe or gpt2 (default: the "
                       "dataset's own); each is prepared in its own out/data/<name>-<kind>"),
    "data-dir": (str, "the folder of the raw data files (only it is searched when given)"),
    "loss-on": (str, "examples datasets: compute the loss on 'response' tokens or 'all'"),
    "n-layer": (int, "transformer blocks"),
    "n-head": (int, "attention heads"),
    "n-embd": (int, "embedding width"),
    "block-size": (int, "context length"),
    "dropout": (float, "dropout probability in training"),
    "gelu": (str, "'tanh' (GPT-2) or 'exact' (nanoGPT)"),
    "arch": (str, "'gpt2' (LayerNorm, learned positions, GELU MLP of 4C, biases, tied head; "
                  "the default) or 'llama' (RMSNorm, RoPE, SwiGLU of 8/3 C, no biases, untied "
                  "head, n_head/2 key/value heads); the flags below override single parts"),
    "norm": (str, "'layernorm' or 'rmsnorm' (default: the arch's)"),
    "position": (str, "'learned' (a wpe table) or 'rope' (rotary; no table)"),
    "rope-theta": (float, "RoPE's base (default 10000)"),
    "rope-layout": (str, "RoPE's pairs: 'halves' (Hugging Face rotate_half; the default) or "
                         "'interleaved' (Meta's original, llama2.c)"),
    "mlp": (str, "'gelu' or 'swiglu' (silu(gate) * up)"),
    "ffn-hidden": (int, "the MLP's hidden width (default 4C for gelu; for swiglu int(8C/3) "
                        "rounded up to a multiple of 32, as llama2.c)"),
    "n-kv-head": (int, "key/value heads, a divisor of --n-head (grouped-query attention; "
                       "1 = multi-query; default: the arch's)"),
    "init-from": (str, "start from this checkpoint folder's weights instead of scratch"),
    "pad-vocab-to": (int, "round the model's vocabulary up to a multiple of N (64: GPT-2's "
                          "50257 -> 50304, as nanoGPT; padding ids are never sampled)"),
    "batch-size": (int, "sequences per micro-batch"),
    "gradient-accumulation-steps": (int, "micro-batches per optimizer step"),
    "max-iters": (int, "optimizer steps"),
    "learning-rate": (float, "peak learning rate"),
    "min-lr": (float, "final learning rate of the cosine decay"),
    "warmup-iters": (int, "linear warmup steps"),
    "lr-decay-iters": (int, "step where the cosine reaches min-lr (default: --max-iters, for "
                            "every preset; stored with the run, so a --resume with a larger "
                            "--max-iters keeps it unless given again)"),
    "lr-schedule": (str, "'cosine' (warmup, one cosine to min-lr; the default) or "
                         "'cosine-restarts' (warmup, then cosine cycles restarting at the "
                         "learning rate: PyTorch's CosineAnnealingWarmRestarts)"),
    "lr-restart-period": (int, "cosine-restarts: steps of the first cycle (T_0)"),
    "lr-restart-mult": (int, "cosine-restarts: each next cycle this many times longer "
                             "(T_mult; default 1)"),
    "weight-decay": (float, "AdamW decoupled weight decay (2-D weights only)"),
    "beta1": (float, "AdamW beta1"),
    "beta2": (float, "AdamW beta2"),
    "grad-clip": (float, "clip the global gradient norm to this (0 = off)"),
    "label-smoothing": (float, "label smoothing of the cross-entropy, in [0, 1)"),
    "eval-interval": (int, "evaluate and checkpoint every N steps"),
    "eval-iters": (int, "batches per split in each evaluation"),
    "log-interval": (int, "refresh the progress bar every N steps"),
    "patience": (int, "early stopping after N evaluations without val improvement (0 = off)"),
    "sample-tokens": (int, "tokens to sample from the best model at the end (0 = none)"),
    "seed": (int, "seed of init, batches and dropout"),
    "threads": (int, "CPU threads (numpy: batch shards; torch: intra-op threads); default all"),
}


def add_args(parser: argparse.ArgumentParser, twin: Twin) -> None:
    parser.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} "
                                         f"(default {DEFAULT_PRESET} when no --config)")
    parser.add_argument("--config", metavar="JSON", help="settings from a JSON file")
    parser.add_argument("--out", help="output folder (default out/<preset>-<backend>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT/last with its stored settings; only "
                             f"these may change: {plan.resumable_flags()}")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUT that already holds a run")
    for flag, (kind, help_text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, default=None, help=help_text)
    parser.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                        help="biases in Linear and LayerNorm layers (default: the arch's)")
    parser.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                        help="share the embedding and output matrices (default: the arch's)")
    twin.add_train_args(parser, dtypes=("float32", "float64"))
    parser.add_argument("--no-plot", action="store_true", help="do not write loss.png")


def run(args: argparse.Namespace) -> int:
    name = args.preset or (Path(args.config).stem if args.config else DEFAULT_PRESET)
    out_dir = Path(args.out or f"out/{name}-{args.backend}")
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    stop = StopFlag()  # Ctrl-C, SIGTERM, SIGHUP: save after this step (run_guard)
    # one run per folder, locked before anything is read or written
    with stop.installed(), lock_run(out_dir, enabled=main_process) as lock:
        if lock is not None and lock.reclaimed:
            print(f"note: {out_dir} was locked by pid {lock.reclaimed}, which is no longer "
                  "running (killed?); taken over")
        try:
            return run_locked(args, out_dir, stop)
        except Aborted as e:  # a second signal: at once, without saving
            if main_process:
                print(aborted_line(e, out_dir), file=sys.stderr)
            return 128 + e.signum


def run_locked(args: argparse.Namespace, out_dir: Path, stop: StopFlag) -> int:
    """The run, with out_dir locked and the stop signals caught (run_guard)."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    preset = args.preset or (None if args.config else DEFAULT_PRESET)
    name = args.preset or (Path(args.config).stem if args.config else DEFAULT_PRESET)
    # Resolve and check everything before any file is written (training/plan.py's rule).
    state: dict[str, Any] = {}
    if args.resume:
        plan.refuse_settings_files_on_resume(args.preset, args.config, out_dir)
        plan.refuse_lora_run(out_dir)
        tcfg, state = plan.resumed_config(out_dir, given)
        name = tcfg.name or out_dir.name  # the name its first session printed
    else:
        tcfg = resolve(preset, args.config, given).replace(name=name)
        if tcfg.lr_schedule == "cosine":  # the decay point is part of the run, kept on resume
            tcfg = tcfg.replace(lr_decay_iters=tcfg.decay_iters)
        check_out_dir(out_dir, args.overwrite)
    on_cpu = args.twin.is_cpu(tcfg.device)  # an unusable device fails here
    if on_cpu:  # without the vocabulary first, so a hopeless size prepares no data either
        plan.check_memory(tcfg, vocab_size=0)
    dataset = plan.open_dataset(tcfg)
    tcfg = tcfg.replace(tokenizer=dataset.meta.get("tokenizer", tcfg.tokenizer))
    plan.check_targets_fit(dataset, tcfg)
    if args.resume:
        plan.check_tokenizer(out_dir / "last", dataset, "--resume from",
                             "the data has changed since the run started (a fine-tune "
                             f"continues with finetune --resume --out {out_dir})")
    elif tcfg.init_from:  # what was asked for: an explicit --preset, the --config file, flags
        # (not the default preset, which nobody asked for when only --init-from is given)
        asked = {k: (v, f"--preset {args.preset}") for k, v in PRESETS.get(args.preset, {}).items()}
        if args.config:
            asked.update({k: (v, f"--config {args.config}")
                          for k, v in read_settings_file(args.config).items()})
        asked.update({k: (v, None) for k, v in given.items() if v is not None})
        tcfg = plan.init_from_config(tcfg, asked, dataset)
    if on_cpu:
        plan.check_memory(tcfg, dataset.vocab_size)
    if not args.resume:
        clear_out_dir(out_dir)
    make_backend = args.twin.train_backend
    keep_freed_memory()  # reuse freed activations instead of page-faulting them back in

    # under torchrun only rank 0 reports; the others train silently
    main_process = int(os.environ.get("RANK", "0")) == 0
    reporter = ConsoleReporter(tcfg.log_interval) if main_process else Reporter()
    say = print if main_process else (lambda *a, **k: None)
    say(f"{args.backend} twin: training {name} on {dataset.folder} "
        f"({tcfg.n_layer}L/{tcfg.n_head}H/{tcfg.n_embd}d, {dataset.meta.get('tokenizer')} "
        f"vocab {dataset.vocab_size:,}{padded_vocab(tcfg, dataset.vocab_size)}, "
        f"T={tcfg.block_size}, "
        f"B={tcfg.batch_size}x{tcfg.gradient_accumulation_steps}, {tcfg.max_iters} iters, "
        f"{tcfg.dtype}) -> {out_dir}", flush=True)
    say(f"architecture: {tcfg.model_config(dataset.vocab_size).describe_arch()}", flush=True)
    if tcfg.dropout_masks == "numpy" and tcfg.dropout > 0 and args.twin.name != "numpy":
        say("dropout masks: numpy_gpt's, drawn as the NumPy twin draws them (--dropout-masks "
            "numpy); attention is written out, not SDPA", flush=True)
    if on_cpu:  # every CPU figure names the BLAS kernel that produced it (DESIGN.md)
        for line in args.twin.blas_lines(f"python -m {args.twin.package} train ...",
                                         tcfg.threads):
            say(line)
    if tcfg.init_from and not args.resume:
        say(f"starting from the weights of {tcfg.init_from}")
    if args.resume:
        say(plan.resume_line(out_dir, state, tcfg), flush=True)
    say(schedule_line(tcfg), flush=True)
    if main_process and on_cpu and tcfg.dtype in ("bfloat16", "float16"):  # torch only
        warn_slow_autocast(args.twin, tcfg, dataset.vocab_size)
    t0 = time.perf_counter()
    try:
        result = train(tcfg, dataset, out_dir, make_backend, resume=args.resume,
                       reporter=reporter, should_stop=stop, time_estimate=main_process)
    except TrainingError as e:  # diverged, or a write failed (disk full): what is safe
        print(f"error: {e}", file=sys.stderr)
        return 1
    stop.restore()  # training is over: the plots and the sample stop at one Ctrl-C
    wall = time.perf_counter() - t0
    if not main_process:
        return stop.exit_status if result.status == "interrupted" else 0
    if result.status == "interrupted":
        print(f"interrupted by {stop.name} at iter {result.iter}: saved {out_dir / 'last'}; "
              f"continue with --resume --out {out_dir}")
        return stop.exit_status
    session = f" ({wall:.1f} s of them in this session)" if args.resume else ""
    print(f"{result.status}: iter {result.iter}, best val loss {result.best_val_loss:.4f}, "
          f"{result.elapsed_s:.1f} s of training{session}; checkpoints in {out_dir}/best and "
          f"{out_dir}/last")
    try:
        if not args.no_plot and result.log and plot_log(result.log, out_dir / "loss.png", name):
            print(f"loss curve: {out_dir / 'loss.png'}")
            if plot_training(result.log, out_dir / "diagnostics.png", name):  # diagnostics
                print(f"gradient norms and update ratios: {out_dir / 'diagnostics.png'}")
    except WriteError as e:
        print(f"error: {plot_fault(e, out_dir)}", file=sys.stderr)
        return 1
    if tcfg.sample_tokens and (out_dir / "best").is_dir():
        print_sample(args.twin, out_dir / "best", tcfg)
    return 0


def schedule_line(tcfg: TrainConfig) -> str:
    """The learning-rate schedule the run follows, with the rule that set its end."""
    warmup = f"warmup {tcfg.warmup_iters} iters to {tcfg.learning_rate:g}"
    if tcfg.lr_schedule == "cosine-restarts":
        return (f"lr: {warmup}, then cosine cycles down to {tcfg.min_lr:g} restarting every "
                f"{tcfg.lr_restart_period} iters (each next one x{tcfg.lr_restart_mult or 1})")
    late = ("; the warmup outlasts the decay, so the rate only rises: lower --warmup-iters"
            if tcfg.warmup_iters >= tcfg.decay_iters else "")
    return (f"lr: {warmup}, cosine down to {tcfg.min_lr:g} at iter {tcfg.decay_iters} "
            f"(--lr-decay-iters; default --max-iters), then flat{late}")


def padded_vocab(tcfg: TrainConfig, vocab_size: int) -> str:
    """' padded to N' when --pad-vocab-to rounds the model's vocabulary up, else ''."""
    n = tcfg.model_vocab_size(vocab_size)
    return f" padded to {n:,}" if n != vocab_size else ""


def warn_slow_autocast(twin: Twin, tcfg: TrainConfig, vocab_size: int) -> None:
    """bf16/fp16 autocast on a CPU is often several times slower than float32: say by how
    much, measured on this model's shape (a few throwaway steps at batch 1)."""
    factor = twin.autocast_slowdown(tcfg.model_config(vocab_size), tcfg.dtype)
    advice = ("use --dtype float32 on a CPU (autocast pays off on GPUs)" if factor > 1.1
              else "no slower than float32 here")
    print(f"warning: --dtype {tcfg.dtype} on the CPU: a training step of this model measured "
          f"{factor:.1f}x the time of float32; {advice}", file=sys.stderr, flush=True)


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to clobber an earlier run unless asked; with --overwrite clear its files."""
    check_out_dir(out_dir, overwrite)
    clear_out_dir(out_dir)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """ValueError if out_dir holds a run and --overwrite was not given (nothing is touched)."""
    if any(p.exists() for p in _run_files(out_dir)) and not overwrite:
        raise ValueError(f"{out_dir} already holds a training run; pass --resume to continue "
                         "it, --overwrite to start afresh, or --out DIR for a new folder")


def clear_out_dir(out_dir: Path) -> None:
    """Remove an earlier run's files (after every check of the new run has passed)."""
    for p in _run_files(out_dir):
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _run_files(out_dir: Path) -> list[Path]:
    return [out_dir / n for n in ("last", "best", LOG_FILE, "loss.png", "diagnostics.png")]


def print_sample(twin: Twin, folder: Path, tcfg: TrainConfig) -> None:
    print(f"--- sample from {folder} ---")
    for piece in sample_text(twin, folder, prompt=None, max_new_tokens=tcfg.sample_tokens,
                             seed=tcfg.seed):
        print(piece, end="", flush=True)
    print("\n---")


def plot_fault(e: WriteError, out_dir: Path) -> str:
    """The line for a plot that could not be written once training is over."""
    return str(e.with_advice(f"training is finished and its checkpoints in {out_dir}/last and "
                             f"{out_dir}/best are intact; free space and draw the curves "
                             f"with: python -m numpy_gpt plot training --run {out_dir}"))
