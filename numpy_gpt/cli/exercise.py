"""`python -m numpy_gpt exercise`: write the backward passes yourself, have them checked.

    exercise list [--dir D]                 the exercises, in docs/backprop.md's order, and progress
    exercise start NAME [--dir D] [--force] write D/NAME.py: the forward, the backward to fill in
    exercise check NAME [--dir D]           finite differences + the reference; what kind of wrong
    exercise hint NAME [--level K]          from a nudge (1) to the full equations (3)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..exercises import (
    DEFAULT_DIR,
    ORDER,
    check,
    format_report,
    hint,
    progress_line,
    read_progress,
    start,
)
from ..exercises.catalog import exercise_title


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="the exercises and your progress", allow_abbrev=False)
    _dir(p)
    p = sub.add_parser("start", help="write an exercise file to fill in", allow_abbrev=False)
    p.add_argument("name", metavar="NAME", help=f"one of: {' '.join(ORDER)}")
    _dir(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("check", help="check your backward", allow_abbrev=False)
    p.add_argument("name", metavar="NAME", help=f"one of: {' '.join(ORDER)}")
    _dir(p)
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    p = sub.add_parser("hint", help="a hint, from a nudge to the full equation",
                       allow_abbrev=False)
    p.add_argument("name", metavar="NAME", help=f"one of: {' '.join(ORDER)}")
    p.add_argument("--level", type=int, default=1, help="1 (a nudge) to 3 (the equations)")


def _dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=DEFAULT_DIR,
                   help=f"your exercise folder (default ./{DEFAULT_DIR})")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        progress = read_progress(Path(args.dir))
        for i, name in enumerate(ORDER, 1):
            title = exercise_title(name)
            status = progress.get(name, "")
            print(f"{i:2d}. {name:14s} {title:50s} {status}".rstrip())
        print(progress_line(progress))
        return 0
    if args.action == "start":
        path = start(args.name, args.dir, force=args.force)
        print(f"wrote {path}: fill in the backward, then "
              f"`python -m numpy_gpt exercise check {args.name} --dir {args.dir}`")
        return 0
    if args.action == "hint":
        for paragraph in hint(args.name, args.level):
            print(paragraph)
        return 0
    report, progress = check(args.name, args.dir, seed=args.seed)
    for line in format_report(report):
        print(line)
    print(progress_line(progress))
    return 0 if report.passed else 1
