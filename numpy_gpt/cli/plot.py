"""`python -m numpy_gpt plot`: pictures of what a model does and how its training went.

    plot attention --ckpt DIR --prompt TEXT [--out PNG]   every layer and head's attention map
    plot training --run OUT_DIR [--out PNG]               loss + gradient norms + update ratios
    plot runs --run A --run B [--label L ...] [--out PNG] several runs' loss curves overlaid

The logic lives in numpy_gpt/nn/attention_maps.py, numpy_gpt/training/diagnostics.py and
numpy_gpt/training/curves.py; this file only parses flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..nn.attention_maps import attention_maps, plot_attention, token_labels
from ..training.curves import plot_runs, read_runs
from ..training.diagnostics import plot_training
from ..training.train import LOG_FILE


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="picture", metavar="PICTURE", required=True)
    p = sub.add_parser("attention", help="attention maps of a checkpoint for a prompt (PNG)",
                       allow_abbrev=False)
    p.add_argument("--ckpt", required=True, help="a checkpoint folder (e.g. OUT/best)")
    p.add_argument("--prompt", required=True, help="the text whose attention is drawn")
    p.add_argument("--out", default="attention.png", help="the PNG to write (attention.png)")
    p = sub.add_parser("training", help="loss, gradient norms and update/weight ratios of a "
                       "training run (PNG)", allow_abbrev=False)
    p.add_argument("--run", required=True, help="a training output folder (holds log.jsonl)")
    p.add_argument("--out", default=None, help="the PNG to write (default RUN/diagnostics.png)")
    p = sub.add_parser("runs", help="several training runs' loss curves in one picture, and "
                       "with two runs their difference (PNG)", allow_abbrev=False)
    p.add_argument("--run", action="append", required=True, metavar="OUT_DIR",
                   help="a training output folder (holds log.jsonl); repeat for each run")
    p.add_argument("--label", action="append", default=None, metavar="NAME",
                   help="the legend's name of each --run, in order (default: folder names)")
    p.add_argument("--title", default="", help="the picture's title")
    p.add_argument("--out", default="runs.png", help="the PNG to write (runs.png)")


def run(args: argparse.Namespace) -> int:
    if args.picture == "attention":
        from ..nn.checkpoint import checkpoint_tokenizer
        from ..nn.model import GPT

        tokenizer = checkpoint_tokenizer(args.ckpt)
        model = GPT.load(args.ckpt)
        ids = tokenizer.encode(args.prompt)
        maps = attention_maps(model, ids)
        T = maps.shape[-1]
        if not plot_attention(maps, token_labels(tokenizer, ids[-T:]), args.out,
                              f"{args.ckpt}: {args.prompt[:60]!r}"):
            raise ImportError("plotting needs matplotlib (pip install matplotlib)")
        print(f"wrote {args.out}: {maps.shape[0]} layers x {maps.shape[1]} heads, {T} tokens")
        return 0
    if args.picture == "runs":
        runs = read_runs(args.run, args.label)
        if not plot_runs(runs, args.out, args.title):
            raise ImportError("plotting needs matplotlib (pip install matplotlib)")
        print(f"wrote {args.out}: the loss curves of {', '.join(runs)}")
        return 0
    log = Path(args.run) / LOG_FILE
    if not log.is_file():
        raise FileNotFoundError(f"{log} not found: --run must be a `train --out` folder")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    out = Path(args.out) if args.out else Path(args.run) / "diagnostics.png"
    if not plot_training(records, out, str(args.run)):
        raise ValueError(f"{log} has no gradient diagnostics (written by a training run "
                         "before they existed), or matplotlib is missing")
    print(f"wrote {out}: loss, per-layer gradient norms, update/weight ratios")
    return 0
