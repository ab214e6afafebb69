"""`python -m numpy_gpt eval` / `python -m torch_gpt eval`: loss and perplexity of a checkpoint.

A full, deterministic pass over a split: a token stream is cut into consecutive windows of
block_size tokens (every token predicted once, each with up to block_size - 1 tokens of
context), an examples dataset is read example by example. The loss is averaged over all
counted tokens (not over batches), and perplexity = exp(loss).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.dataset import IGNORE_INDEX, TokenDataset, collate_examples
from ..data.datasets import DATASETS
from ..nn import checkpoint as ckpt
from ..training.config import TrainConfig
from ..training.plan import open_dataset
from ..twin import Twin


def add_args(parser: argparse.ArgumentParser, twin: Twin) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint folder")
    parser.add_argument("--dataset", help="named dataset or prepared folder (default: the one "
                                          "the checkpoint was trained on)")
    parser.add_argument("--data-dir", help="the folder of the raw data files (only it is "
                                           "searched when given)")
    parser.add_argument("--split", default="val", help="split to evaluate (default val)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    parser.add_argument("--max-batches", type=int, help="stop after N batches (default: all)")
    twin.add_train_args(parser, dtypes=("float32", "float64"))


def run(args: argparse.Namespace) -> int:
    folder = Path(args.ckpt)
    meta = ckpt.read_meta(folder)
    dataset_name = args.dataset or trained_on(folder)
    if dataset_name is None:
        raise ValueError(f"{folder} does not record its dataset; pass --dataset NAME")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    # a named dataset is read as prepared with the checkpoint's tokenizer kind
    kind = meta.get("tokenizer") if dataset_name in DATASETS else None
    ds = open_dataset(TrainConfig(dataset=dataset_name, data_dir=args.data_dir, tokenizer=kind),
                      progress=False)
    check_tokenizer(meta, ds, folder)
    loss_fn, block_size = args.twin.loss_fn(folder, args.device, args.dtype)
    total, count = 0.0, 0
    for x, y in batches(ds, args.split, block_size, args.batch_size, args.max_batches):
        n = int(np.count_nonzero(y != IGNORE_INDEX))
        if n:
            total += loss_fn(x, y) * n
            count += n
    if count == 0:
        raise ValueError(f"split {args.split!r} has no tokens to evaluate")
    loss = total / count
    print(f"{args.split} loss {loss:.4f}, perplexity {math.exp(min(loss, 700)):.2f} over "
          f"{count:,} tokens ({dataset_name}, {args.backend} twin)")
    print(f"architecture: {ckpt.checkpoint_arch(folder)}")
    return 0


def trained_on(folder: Path) -> str | None:
    """The dataset of a training run: from the folder's trainer state, or its sibling last/
    (best/ holds weights only)."""
    for candidate in (folder, folder.parent / "last"):
        try:
            return ckpt.load_trainer_state(candidate)["train_config"]["dataset"]
        except (ckpt.CheckpointError, KeyError):
            continue
    return None


def check_tokenizer(meta: dict, ds: TokenDataset, folder: Path) -> None:
    kind = meta.get("tokenizer")
    model_vocab = meta["model"]["vocab_size"]
    if kind is not None and kind != ds.meta.get("tokenizer"):
        raise ValueError(f"{folder} uses a {kind} tokenizer but the dataset is tokenized with "
                         f"{ds.meta.get('tokenizer')}; evaluate on data prepared for it")
    if ds.vocab_size > model_vocab:
        raise ValueError(f"the dataset's tokenizer has {ds.vocab_size} tokens but {folder} has "
                         f"vocab_size {model_vocab}")


def batches(ds: TokenDataset, split: str, T: int, B: int, limit: int | None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive windows of a stream, or examples in order, B at a time."""
    done = 0
    if ds.layout == "stream":
        tokens = ds.tokens(split)
        starts = range(0, max(len(tokens) - 1, 0), T)
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        for s in starts:
            chunk = np.asarray(tokens[s:s + T + 1], dtype=np.int64)
            x, y = chunk[:-1], chunk[1:]
            if len(y) < T:  # the last, shorter window: pad, and ignore the padding
                x = np.concatenate([x, np.zeros(T - len(x), np.int64)])
                y = np.concatenate([y, np.full(T - len(y), IGNORE_INDEX, np.int64)])
            rows.append((x, y))
            if len(rows) == B:
                yield np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
                rows, done = [], done + 1
                if limit and done >= limit:
                    return
        if rows:
            yield np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        return
    for k in range(0, ds.num_examples(split), B):
        ks = range(k, min(k + B, ds.num_examples(split)))
        yield collate_examples([ds.example(split, i) for i in ks], T, ds.pad_id)
        done += 1
        if limit and done >= limit:
            return
