"""`python -m numpy_gpt prepare` / `python -m torch_gpt prepare`: a named dataset or a file
into a prepared folder of token files (numpy_gpt/data/prepare.py does the work).

    python -m numpy_gpt prepare shakespeare_char
    python -m numpy_gpt prepare --input chats.csv --tokenizer bpe --vocab-size 1024

Prints one summary line; on bad input one `error: ...` line and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.dataset import META_FILE, DataError
from ..data.datasets import DATASETS
from ..data.prepare import (
    DEFAULT_BPE_VOCAB,
    FORMATS,
    TOKENIZER_KINDS,
    prepare,
    prepare_dataset,
    prepared_folder,
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m numpy_gpt prepare`."""
    names = ", ".join(DATASETS)
    parser.add_argument("dataset", nargs="?", help=f"a named dataset: {names}")
    parser.add_argument("--dataset", dest="dataset_flag", metavar="NAME",
                        help="a named dataset (same as the positional argument)")
    parser.add_argument("--input", metavar="FILE", help="prepare this file instead")
    parser.add_argument("--format", choices=FORMATS,
                        help="format of --input (default: from its extension: .txt text, "
                             ".csv csv, .json alpaca, .jsonl jsonl)")
    parser.add_argument("--tokenizer", choices=TOKENIZER_KINDS,
                        help="tokenizer kind (default: the dataset's; gpt2 for --input)")
    parser.add_argument("--vocab-size", type=int, metavar="N",
                        help=f"vocabulary size for bpe (default {DEFAULT_BPE_VOCAB}) or word "
                             f"(default: every word), special tokens included")
    parser.add_argument("--min-freq", type=int, default=1, metavar="N",
                        help="word tokenizer: drop words seen fewer than N times")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default out/data/<name>-<tokenizer>, plus each "
                             "option that is not its default, e.g. chats-bpe-v1024)")
    parser.add_argument("--val-fraction", type=float, default=0.1, metavar="P",
                        help="share of the data for validation (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.0, metavar="P",
                        help="share of the data for a test split (default 0: none)")
    parser.add_argument("--seed", type=int, default=1337, metavar="S",
                        help="seed of the document/example split (default 1337)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the folder of the raw data, the only one searched when given "
                             "(default: $GPT_DATA_DIR, ./data, ../shared/data)")
    parser.add_argument("--name", help="name of an --input dataset (default: the file's stem)")
    parser.add_argument("--force", action="store_true",
                        help="prepare again even if the output folder is up to date")


def run(args: argparse.Namespace) -> int:
    """Run `prepare` from parsed arguments; prints one summary line, or `error: ...` and
    returns 1 on bad input."""
    try:
        if args.dataset and args.dataset_flag and args.dataset != args.dataset_flag:
            raise DataError("give the dataset name once (positional or --dataset)")
        name = args.dataset or args.dataset_flag
        if (name is None) == (args.input is None):
            raise DataError("give a dataset name or --input FILE (exactly one of them)")
        common = {"vocab_size": args.vocab_size, "min_freq": args.min_freq,
                  "val_fraction": args.val_fraction, "test_fraction": args.test_fraction,
                  "seed": args.seed}
        if name is not None:
            if args.format is not None:
                raise DataError("--format applies to --input files, not named datasets")
            out = prepare_dataset(name, args.out, args.data_dir, progress=True,
                                  tokenizer=args.tokenizer, force=args.force, **common)
        else:
            path = Path(args.input)
            name = args.name or path.stem
            kind = args.tokenizer or "gpt2"
            if args.out is None and name in DATASETS:  # out/data/<name>-* is that dataset's
                raise DataError(f"--input {path}: {name!r} is the name of a named dataset, "
                                f"whose preparations live in out/data/{name}-*; pass --name "
                                "NAME or --out DIR")
            out = prepare(path, args.out or prepared_folder(name, kind, **common), fmt=args.format,
                          tokenizer=kind, data_dir=args.data_dir, name=name, progress=True,
                          reuse=not args.force, **common)
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    splits = ", ".join(f"{s} {v['tokens']:,} tokens" for s, v in meta["splits"].items())
    print(f"{out}: {meta['tokenizer']} tokenizer (vocab {meta['vocab_size']:,}), {splits}")
    return 0
