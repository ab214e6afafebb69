"""`python -m numpy_gpt finetune` / `python -m torch_gpt finetune`: fine-tune a checkpoint.

    python -m numpy_gpt finetune --ckpt out/instruct-numpy/best --dataset instruct
    python -m torch_gpt finetune --ckpt DIR --dataset dialogue --lora --lora-rank 8 \\
        --lora-targets c_attn,c_proj --max-iters 200

The dataset is prepared with the checkpoint's tokenizer; the loss is on responses only unless
--loss-on all; training stops early when the validation loss has not improved for --patience
evaluations. With --lora only the adapters train; OUT/adapter holds them alone and
OUT/merged the merged model for sample/chat. The library side is numpy_gpt/training/finetune.py; the
training flags are train's (numpy_gpt/cli/train.py), minus those that would change the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..data.dataset import TokenDataset
from ..files.safe_io import WriteError
from ..nn.checkpoint import checkpoint_arch, checkpoint_tokenizer
from ..nn.lora import TARGETS, LoRAConfig
from ..training.config import TrainConfig
from ..training.finetune import (
    FINETUNE_DEFAULTS,
    LORA_DEFAULTS,
    finetune,
    finetune_config,
    open_finetune_dataset,
    stored_lora,
)
from ..training.plan import check_targets_fit, resume_line, resumed_config
from ..training.progress import ConsoleReporter
from ..training.run_guard import Aborted, StopFlag, aborted_line, lock_run, saved_state
from ..training.train import TrainingError, plot_log
from ..twin import Twin
from .train import FLAGS, plot_fault, prepare_out_dir

# train's flags that would change the model, or that finetune sets itself
NOT_HERE = ("dataset", "n-layer", "n-head", "n-embd", "gelu", "init-from", "sample-tokens",
            "tokenizer", "pad-vocab-to", "arch", "norm", "position", "rope-theta", "rope-layout",
            "mlp", "ffn-hidden", "n-kv-head")
LORA_FLAGS = {  # flag -> (type, default, metavar, help)
    "lora-rank": (int, 8, "R", "rank r of each adapter's update B A"),
    "lora-alpha": (float, 16.0, "A", "the update is scaled by alpha / r"),
    "lora-dropout": (float, 0.05, "P", "dropout on the adapters' input, in training"),
    "lora-targets": (str, "c_attn,c_proj", "LIST",
                     f"comma-separated modules among {','.join(TARGETS)}"),
}


def add_args(parser: argparse.ArgumentParser, twin: Twin) -> None:
    parser.add_argument("--ckpt", metavar="DIR",
                        help="checkpoint folder to start from (its tokenizer encodes the data)")
    parser.add_argument("--dataset", metavar="NAME|DIR",
                        help="instruct, dialogue (or another named dataset), or a folder "
                             "made by `prepare` with the checkpoint's tokenizer")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default out/finetune-<dataset>-<full|lora>-<twin>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT/last (OUT: --out, or the default folder "
                             "of --dataset and --lora)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUT that already holds a run")
    parser.add_argument("--lora", action="store_true",
                        help="train LoRA adapters only (the base weights stay frozen)")
    for flag, (kind, default, metavar, help_text) in LORA_FLAGS.items():
        parser.add_argument(f"--{flag}", type=kind, default=None, metavar=metavar,
                            help=f"{help_text} (with --lora; default {default})")
    for flag, (kind, help_text) in FLAGS.items():
        if flag in NOT_HERE:
            continue
        default = FINETUNE_DEFAULTS.get(flag.replace("-", "_"))
        if flag == "learning-rate":
            suffix = f" (default {default:g}, {LORA_DEFAULTS['learning_rate']:g} with --lora)"
        else:
            suffix = "" if default is None else f" (default {default})"
        parser.add_argument(f"--{flag}", type=kind, default=None, help=help_text + suffix)
    twin.add_train_args(parser, dtypes=("float32", "float64"))
    parser.add_argument("--no-plot", action="store_true", help="do not write loss.png")


def lora_config(args: argparse.Namespace) -> LoRAConfig | None:
    """The LoRAConfig the flags ask for; None without --lora (a --lora-* flag alone is a
    mistake)."""
    given = {f: getattr(args, f.replace("-", "_")) for f in LORA_FLAGS}
    if not args.lora:
        stray = [f"--{f}" for f, v in given.items() if v is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} only applies with --lora")
        return None
    v = {f: LORA_FLAGS[f][1] if given[f] is None else given[f] for f in LORA_FLAGS}
    targets = tuple(t.strip() for t in v["lora-targets"].split(",") if t.strip())
    return LoRAConfig(rank=v["lora-rank"], alpha=v["lora-alpha"], dropout=v["lora-dropout"],
                      targets=targets)


def default_out(args: argparse.Namespace) -> str:
    kind = "lora" if args.lora else "full"
    return f"out/finetune-{Path(args.dataset).name}-{kind}-{args.backend}"


def resume_folder(args: argparse.Namespace) -> Path:
    """The run to resume: --out, or the default folder of --dataset (and --lora)."""
    if args.out is not None:
        return Path(args.out)
    if args.dataset is None:
        raise ValueError("finetune --resume needs --out DIR, or the --dataset (and --lora) the "
                         "run was started with, to find its default folder "
                         "out/finetune-<dataset>-<full|lora>-<twin>")
    return Path(default_out(args))


def resumed_lora(out_dir: Path, args: argparse.Namespace) -> LoRAConfig | None:
    """The run's stored LoRA config; --lora / --lora-* flags that contradict it are refused."""
    stored = stored_lora(out_dir)
    if args.lora and stored is None:
        raise ValueError(f"--lora: the run in {out_dir} is a full fine-tune; drop --lora to "
                         "resume it")
    given = {f: getattr(args, f.replace("-", "_")) for f in LORA_FLAGS}
    given = {f: v for f, v in given.items() if v is not None}
    if given and stored is None:
        raise ValueError(f"{', '.join(f'--{f}' for f in given)}: the run in {out_dir} is a full "
                         "fine-tune; drop them to resume it")
    now = {"lora-rank": stored.rank, "lora-alpha": stored.alpha, "lora-dropout": stored.dropout,
           "lora-targets": ",".join(stored.targets)} if stored is not None else {}
    wrong = [f for f, v in given.items() if v != now[f]]
    if wrong:
        raise ValueError(f"{', '.join(f'--{f} {given[f]}' for f in wrong)}: cannot change on "
                         f"--resume (the run in {out_dir} has "
                         f"{', '.join(f'{f} {now[f]}' for f in wrong)}); drop it")
    return stored


def run(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    lcfg = None if args.resume else lora_config(args)
    state: dict = {}
    if args.resume:
        out_dir = resume_folder(args)
        overrides.pop("dataset")  # --dataset only names the default folder here
        tcfg, state = resumed_config(out_dir, overrides)
        lcfg = resumed_lora(out_dir, args)
        if args.ckpt is not None and Path(args.ckpt) != Path(tcfg.init_from):
            raise ValueError(f"--ckpt {args.ckpt}: the run in {out_dir} fine-tunes "
                             f"{tcfg.init_from}; drop --ckpt to resume it")
        tokenizer = checkpoint_tokenizer(out_dir / "last")
        dataset = open_finetune_dataset(tcfg.dataset, tokenizer)
        if args.dataset is not None and args.dataset not in (tcfg.dataset,
                                                             dataset.meta.get("name")):
            raise ValueError(f"--dataset {args.dataset}: the run in {out_dir} fine-tunes on "
                             f"{dataset.folder}; drop --dataset to resume it")
    else:
        if not args.ckpt or not args.dataset:
            raise ValueError("give --ckpt DIR (the checkpoint to fine-tune) and --dataset "
                             "NAME|DIR (e.g. instruct or dialogue)")
        tokenizer = checkpoint_tokenizer(args.ckpt)  # a missing checkpoint says so here
        out_dir = Path(args.out or default_out(args))
        dataset = open_finetune_dataset(args.dataset, tokenizer, data_dir=args.data_dir,
                                        progress=True)
        overrides.pop("dataset")  # the run's data is the prepared folder, not the name given
        tcfg = finetune_config(args.ckpt, dataset.folder, overrides, lora=lcfg is not None)
        check_targets_fit(dataset, tcfg)
    stop = StopFlag()  # Ctrl-C, SIGTERM, SIGHUP: save after this step (run_guard)
    with stop.installed(), lock_run(out_dir, "fine-tuning run"):  # one run per folder
        if not args.resume:
            prepare_out_dir(out_dir, args.overwrite)
        try:
            return finetune_locked(args, out_dir, tcfg, state, dataset, lcfg, stop)
        except Aborted as e:  # a second signal: at once, without saving
            print(aborted_line(e, out_dir), file=sys.stderr)
            return 128 + e.signum


def finetune_locked(args: argparse.Namespace, out_dir: Path, tcfg: TrainConfig, state: dict,
                    dataset: TokenDataset, lcfg: LoRAConfig | None, stop: StopFlag) -> int:
    """The fine-tune, with out_dir locked and the stop signals caught (run_guard)."""
    what = (f"LoRA r={lcfg.rank} alpha={lcfg.alpha:g} on {','.join(lcfg.targets)}"
            if lcfg is not None else "full fine-tune")
    print(f"{args.backend} twin: {what} of {tcfg.init_from} on {dataset.folder} "
          f"(loss on {tcfg.loss_on}, lr {tcfg.learning_rate:g}, B={tcfg.batch_size}, "
          f"{tcfg.max_iters} iters, patience {tcfg.patience}) -> {out_dir}", flush=True)
    print(f"architecture: {checkpoint_arch(tcfg.init_from)}", flush=True)
    if args.resume:
        print(resume_line(out_dir, state, tcfg), flush=True)
    t0 = time.perf_counter()
    try:
        result = finetune(tcfg, dataset, out_dir, args.twin, lcfg, resume=args.resume,
                          reporter=ConsoleReporter(tcfg.log_interval), should_stop=stop)
    except TrainingError as e:  # diverged, or a write failed (disk full): what is safe
        print(f"error: {e}", file=sys.stderr)
        return 1
    except WriteError as e:  # exporting OUT/adapter or OUT/merged after training
        print(f"error: {e.with_advice(saved_state(out_dir) + ', which exports again')}",
              file=sys.stderr)
        return 1
    stop.restore()  # training is over
    status = result.train.status
    if status == "interrupted":
        print(f"interrupted by {stop.name} at iter {result.train.iter}: saved "
              f"{out_dir / 'last'}; continue with --resume --out {out_dir}")
        return stop.exit_status
    before = "?" if result.val_loss_before is None else f"{result.val_loss_before:.4f}"
    session = f" ({time.perf_counter() - t0:.1f} s of them in this session)" if args.resume else ""
    print(f"{status}: iter {result.train.iter}, val loss {before} before -> "
          f"{result.val_loss_best:.4f} best, {result.train.elapsed_s:.1f} s of training"
          f"{session}")
    if result.adapter_dir is not None:
        print(f"adapter: {result.adapter_dir}; merged model: {result.model_dir}")
    if result.model_dir is not None:
        print(f"chat with it: python -m {args.twin.package} chat --ckpt {result.model_dir}")
    log = result.train.log
    try:
        if not args.no_plot and log and plot_log(log, out_dir / "loss.png", f"finetune {what}"):
            print(f"loss curve: {out_dir / 'loss.png'}")
    except WriteError as e:
        print(f"error: {plot_fault(e, out_dir)}", file=sys.stderr)
        return 1
    return 0
