"""`python -m numpy_gpt train` / `python -m torch_gpt train`: flags, output folder, progress.

With no arguments it trains the `shakespeare-char-cpu` preset on Tiny Shakespeare, prints
evaluations as it goes, saves checkpoints and loss.png under out/, and prints a sample.
Ctrl-C saves OUT/last and exits; `--resume` continues from it bit-identically.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .data import TokenDataset
from .device import array_module
from .runtime import keep_freed_memory
from .train import (
    LOG_FILE,
    Reporter,
    TrainingError,
    numpy_backend,
    numpy_device,
    plot_log,
    train,
)
from .train_config import DEFAULT_PRESET, PRESETS, TrainConfig, resolve
from .train_diagnostics import plot_training

# flag -> (type, help); names are nanoGPT's, in kebab-case. Defaults come from TrainConfig.
FLAGS: dict[str, tuple[Any, str]] = {
    "dataset": (str, ("named dataset (shakespeare_char, shakespeare, tinystories, instruct, "
                     "dialogue) or a folder made by `prepare`")),
    "data-dir": (str, "where raw data files are looked up first"),
    "loss-on": (str, "examples datasets: compute the loss on 'response' tokens or 'all'"),
    "n-layer": (int, "transformer blocks"),
    "n-head": (int, "attention heads"),
    "n-embd": (int, "embedding width"),
    "block-size": (int, "context length"),
    "dropout": (float, "dropout probability in training"),
    "gelu": (str, "'tanh' (GPT-2) or 'exact' (nanoGPT)"),
    "init-from": (str, "start from this checkpoint folder's weights instead of scratch"),
    "batch-size": (int, "sequences per micro-batch"),
    "gradient-accumulation-steps": (int, "micro-batches per optimizer step"),
    "max-iters": (int, "optimizer steps"),
    "learning-rate": (float, "peak learning rate"),
    "min-lr": (float, "final learning rate of the cosine decay"),
    "warmup-iters": (int, "linear warmup steps"),
    "lr-decay-iters": (int, "step where the cosine reaches min-lr (default: max-iters)"),
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


def add_args(parser: argparse.ArgumentParser, backend: str) -> None:
    parser.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} "
                                         f"(default {DEFAULT_PRESET} when no --config)")
    parser.add_argument("--config", metavar="JSON", help="settings from a JSON file")
    parser.add_argument("--out", help="output folder (default out/<preset>-<backend>)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUT that already holds a run")
    for flag, (kind, help_text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, default=None, help=help_text)
    parser.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                        help="biases in Linear and LayerNorm layers")
    parser.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                        help="share the embedding and output matrices")
    add_backend_args(parser, backend, dtypes=("float32", "float64"))
    parser.add_argument("--no-plot", action="store_true", help="do not write loss.png")


def add_backend_args(parser: argparse.ArgumentParser, backend: str,
                     dtypes: tuple[str, ...]) -> None:
    """--dtype and --device for both twins; --compile for torch."""
    if backend == "numpy":
        parser.add_argument("--dtype", choices=dtypes, default=None,
                            help="float32 (fast, default) or float64 (exact)")
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                            help="cuda runs the same NumPy code on CuPy (pip install "
                                 "cupy-cuda12x); auto means cpu for this twin")
        return
    parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"),
                        default=None, help="parameter dtype, or autocast for the half types")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None,
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model")


def run(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    preset = args.preset or (None if args.config else DEFAULT_PRESET)
    name = args.preset or (Path(args.config).stem if args.config else DEFAULT_PRESET)
    out_dir = Path(args.out or f"out/{name}-{args.backend}")
    if args.resume:
        tcfg = resumed_config(out_dir, overrides)
    else:
        tcfg = resolve(preset, args.config, overrides)
    if args.backend == "numpy":  # a device that cannot run fails here, before any file work
        array_module(numpy_device(tcfg.device))
    if not args.resume:
        prepare_out_dir(out_dir, args.overwrite)
    make_backend = backend_factory(args.backend)
    keep_freed_memory()  # reuse freed activations instead of page-faulting them back in

    dataset = open_dataset(tcfg)
    stop = StopFlag()
    # under torchrun only rank 0 reports; the others train silently
    main_process = int(os.environ.get("RANK", "0")) == 0
    reporter = ConsoleReporter(tcfg.log_interval) if main_process else Reporter()
    say = print if main_process else (lambda *a, **k: None)
    say(f"{args.backend} twin: training {name} on {tcfg.dataset} "
          f"({tcfg.n_layer}L/{tcfg.n_head}H/{tcfg.n_embd}d, T={tcfg.block_size}, "
          f"B={tcfg.batch_size}x{tcfg.gradient_accumulation_steps}, {tcfg.max_iters} iters) "
          f"-> {out_dir}", flush=True)
    t0 = time.perf_counter()
    with stop.installed():
        try:
            result = train(tcfg, dataset, out_dir, make_backend, resume=args.resume,
                           reporter=reporter, should_stop=stop)
        except TrainingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    wall = time.perf_counter() - t0
    if not main_process:
        return 130 if result.status == "interrupted" else 0
    if result.status == "interrupted":
        print(f"interrupted at iter {result.iter}: saved {out_dir / 'last'}; "
              f"continue with --resume --out {out_dir}")
        return 130
    print(f"{result.status}: iter {result.iter}, best val loss {result.best_val_loss:.4f}, "
          f"{wall:.1f} s; checkpoints in {out_dir}/best and {out_dir}/last")
    if not args.no_plot and result.log and plot_log(result.log, out_dir / "loss.png", name):
        print(f"loss curve: {out_dir / 'loss.png'}")
        if plot_training(result.log, out_dir / "diagnostics.png", name):  # train_diagnostics.py
            print(f"gradient norms and update ratios: {out_dir / 'diagnostics.png'}")
    if tcfg.sample_tokens and (out_dir / "best").is_dir():
        print_sample(args.backend, out_dir / "best", tcfg)
    return 0


def backend_factory(backend: str):
    if backend == "numpy":
        return numpy_backend
    from torch_gpt.train import torch_backend  # imported only when the torch twin trains

    return torch_backend


def open_dataset(tcfg: TrainConfig) -> TokenDataset:
    """A prepared folder as given, or a named dataset prepared (once) under out/data/."""
    folder = Path(tcfg.dataset)
    if (folder / "meta.json").is_file():
        return TokenDataset(folder)
    from .datasets import prepare_dataset

    return TokenDataset(prepare_dataset(tcfg.dataset, data_dir=tcfg.data_dir, progress=True))


def resumed_config(out_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The stored TrainConfig of OUT/last, with the flags given now on top."""
    state = ckpt.load_trainer_state(out_dir / "last")
    stored = state["train_config"]
    stored.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(stored)


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to clobber an earlier run unless asked; with --overwrite clear its files."""
    previous = [out_dir / n for n in ("last", "best", LOG_FILE, "loss.png")]
    if any(p.exists() for p in previous):
        if not overwrite:
            raise ValueError(f"{out_dir} already holds a training run; pass --resume to continue "
                             "it, --overwrite to start afresh, or --out DIR for a new folder")
        for p in previous:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def print_sample(backend: str, folder: Path, tcfg: TrainConfig) -> None:
    try:
        from .sample_cli import sample_text
    except ImportError:
        return
    print(f"--- sample from {folder} ---")
    for piece in sample_text(backend, folder, prompt=None, max_new_tokens=tcfg.sample_tokens,
                             seed=tcfg.seed):
        print(piece, end="", flush=True)
    print("\n---")


class StopFlag:
    """Ctrl-C asks the loop to save and stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def installed(self):
        flag = self

        class _Ctx:
            def __enter__(self):
                self.old = signal.getsignal(signal.SIGINT)
                signal.signal(signal.SIGINT, flag._handle)

            def __exit__(self, *exc):
                signal.signal(signal.SIGINT, self.old)

        return _Ctx()

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)


class ConsoleReporter(Reporter):
    """A tqdm bar (loss, lr, tokens/s) on stderr and one line per evaluation on stdout."""

    def __init__(self, log_interval: int) -> None:
        self.log_interval, self.bar = log_interval, None

    def start(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                        file=sys.stderr, disable=None)

    def step(self, it: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.bar.update(1)
        if it % self.log_interval == 0:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}",
                                 refresh=False)

    def evaluation(self, r: dict) -> None:
        self.message(f"iter {r['iter']:>6}: train {r['train_loss']:.4f}, val {r['val_loss']:.4f}"
                     f" (ppl {r['val_ppl']:.2f}), lr {r['lr']:.2e}, {r['elapsed_s']:.1f} s"
                     + (" *best*" if r["best"] else ""))

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text)
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
