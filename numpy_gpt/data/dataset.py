"""Batches from a prepared token folder: random windows (nanoGPT) or padded examples.

A prepared folder (written by numpy_gpt.data.prepare) holds:

    meta.json          what the folder is (fields below); read by TokenDataset
    tokenizer.json     the tokenizer (numpy_gpt.tokenizers.load_tokenizer)
    train.bin, val.bin (test.bin)   token ids, uint16 (uint32 when vocab_size > 65536),
                       every document/example of the split concatenated
    <split>_idx.bin    examples layout only: uint64 offsets, n_examples + 1 of them; example k
                       is tokens[idx[k]:idx[k+1]]
    <split>_mask.bin   examples layout only: uint8 per token, 1 = response token (trained on
                       with loss_on="response"), 0 = prompt token

meta.json: format_version, name, layout ("stream": one token stream, batches are random
windows; "examples": instruction/dialogue examples, batches are padded examples), tokenizer
(kind), tokenizer_file, vocab_size, dtype, eot_id, pad_id, splits {split: {tokens, examples,
max_example_tokens (examples layout)}},
source {path, sha256, bytes, format}, split {by, seed, fractions}, settings (what produced the
folder; prepare_dataset reuses the folder when they and the source hash match).

Batches depend only on the np.random.Generator passed in (never a global RNG), so the two twins
draw identical batches for a seed; `rng_state` / `rng_from_state` turn a Generator's state into
JSON and back, which is all that exact resume needs for random batches. ExampleLoader walks
examples epoch by epoch in a seeded permutation, with an (epoch, cursor) state for resume.

Deliberately omits: sharded datasets, document masking inside windows, sequence packing.
Ref: karpathy/nanoGPT train.py get_batch; rasbt/LLMs-from-scratch ch07 (custom_collate_fn:
pad, targets -100, prompt masking).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..tokenizers import Tokenizer

IGNORE_INDEX = -100  # target value the loss skips (PyTorch's cross_entropy default)
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"
DATA_FORMAT_VERSION = 1
LAYOUTS = ("stream", "examples")
LOSS_ON = ("response", "all")


class DataError(ValueError):
    """Bad input data or prepared folder; the one-line message names the problem and the fix."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (ids < 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


# ---- RNG state as JSON ------------------------------------------------------------------------
def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The Generator's bit-generator state: a JSON-serialisable dict (Python ints are exact)."""
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A Generator continuing exactly where the one `rng_state` was taken from stopped."""
    name = state.get("bit_generator")
    bit_generator_cls = getattr(np.random, str(name), None)
    if bit_generator_cls is None or not isinstance(bit_generator_cls, type):
        raise DataError(f"unknown bit generator {name!r} in a saved RNG state")
    bit_generator = bit_generator_cls()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


# ---- random windows (stream layout) ----------------------------------------------------------
def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """B random windows of T+1 consecutive tokens: x = window[:-1], y = window[1:].

    `data` is a 1-D array, typically a np.memmap of a .bin file; only the B*(T+1) tokens of the
    batch are read. Window starts are uniform in [0, len(data) - T), as nanoGPT's
    torch.randint(len(data) - block_size, (batch_size,)). Returns int64 arrays of shape (B, T).
    """
    _check_sizes(batch_size, block_size)
    n = len(data)
    if n <= block_size:
        raise DataError(
            f"this split has {n} tokens, fewer than block_size + 1 = {block_size + 1}; "
            f"use a smaller --block-size or more data"
        )
    ix = rng.integers(0, n - block_size, size=batch_size)
    # (B, 1) + (T+1,) -> (B, T+1) indices; fancy indexing a memmap reads just these elements.
    windows = np.asarray(data[ix[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


# ---- padded examples (examples layout) --------------------------------------------------------
def collate_examples(
    examples: Sequence[tuple[np.ndarray, np.ndarray]],
    block_size: int,
    pad_id: int,
    *,
    loss_on: str = "response",
    pad_to_block: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (ids, mask) examples into (x, y) int64 arrays of shape (B, T).

    Each example is truncated to block_size + 1 tokens; x = ids[:-1], y = ids[1:]. Rows are
    right-padded: x with `pad_id`, y with -100. With loss_on="response", a target whose token
    is a prompt token (mask 0) is -100 as well, so only response tokens are learned.
    T = block_size if `pad_to_block`, else the longest row of this batch. Subtle: a row
    whose prompt alone fills block_size has no target left; keep block_size above the prompt
    lengths (meta.json's max_example_tokens is the longest whole example).
    """
    if loss_on not in LOSS_ON:
        raise DataError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    _check_sizes(len(examples), block_size)
    rows = [(np.asarray(ids)[: block_size + 1], np.asarray(m)[: block_size + 1])
            for ids, m in examples]
    T = block_size if pad_to_block else max(1, max(len(ids) - 1 for ids, _ in rows))
    x = np.full((len(rows), T), pad_id, dtype=np.int64)
    y = np.full((len(rows), T), IGNORE_INDEX, dtype=np.int64)
    for b, (ids, mask) in enumerate(rows):
        n = len(ids) - 1
        if n <= 0:
            continue
        x[b, :n] = ids[:-1]
        y[b, :n] = ids[1:]
        if loss_on == "response":
            # The target at position t is token t+1: it counts if token t+1 is a response token.
            y[b, :n][np.asarray(mask[1:]) == 0] = IGNORE_INDEX
    return x, y


class TokenDataset:
    """A prepared folder opened for reading; splits are memory-mapped, never loaded whole.

        ds = TokenDataset("out/data/shakespeare_char-char")
        x, y = ds.get_batch("train", 12, 64, rng)      # windows or padded examples by layout
        tok = ds.tokenizer()
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.layout: str = self.meta["layout"]
        self.vocab_size: int = int(self.meta["vocab_size"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.pad_id: int = int(self.meta.get("pad_id") or 0)
        self._open: dict[str, np.ndarray] = {}

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def tokens(self, split: str) -> np.ndarray:
        """All token ids of a split as a read-only memmap."""
        return self._array(split, "", self.dtype)

    def num_tokens(self, split: str) -> int:
        return int(self._split_meta(split)["tokens"])

    def num_examples(self, split: str) -> int:
        """Examples (or documents) in a split; 0 for a plain stream."""
        return int(self._split_meta(split).get("examples") or 0)

    def example(self, split: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask) of example k of an examples-layout split."""
        if self.layout != "examples":
            raise DataError(f"{self.folder} holds a token stream, not examples")
        idx = self._array(split, "_idx", np.dtype(np.uint64))
        lo, hi = int(idx[k]), int(idx[k + 1])
        return self.tokens(split)[lo:hi], self._array(split, "_mask", np.dtype(np.uint8))[lo:hi]

    def examples_with_targets(self, split: str, block_size: int) -> tuple[int, int]:
        """(examples of `split` with at least one response target inside block_size + 1
        tokens, the shortest prompt length in tokens). collate_examples keeps an example's
        first block_size + 1 tokens, and a target counts when its token is a response token
        (mask 1) at position 1..block_size, so an example whose response starts later
        teaches nothing under loss_on="response"."""
        idx = self._array(split, "_idx", np.dtype(np.uint64)).astype(np.int64)
        ones = np.flatnonzero(self._array(split, "_mask", np.dtype(np.uint8)))  # response tokens
        # the first response token at or after each example's start (if inside the example)
        first = ones[np.minimum(np.searchsorted(ones, idx[:-1]), max(len(ones) - 1, 0))] \
            if len(ones) else np.full(len(idx) - 1, np.iinfo(np.int64).max)
        inside = (first >= idx[:-1]) & (first < idx[1:])
        start = np.where(inside, first - idx[:-1], idx[1:] - idx[:-1])  # prompt length
        ok = inside & (start >= 1) & (start <= block_size)
        return int(ok.sum()), int(start.min()) if len(start) else 0

    def tokenizer(self) -> Tokenizer:
        """The folder's tokenizer.json, loaded."""
        from ..tokenizers import load_tokenizer  # lazily: the tokenizers import this module

        return load_tokenizer(self.folder / self.meta.get("tokenizer_file", TOKENIZER_FILE))

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        rng: np.random.Generator,
        *,
        loss_on: str = "response",
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training batch drawn with `rng`: random windows for a stream, or `batch_size`
        examples drawn uniformly (with replacement) and padded for an examples folder."""
        if self.layout == "stream":
            return get_batch(self.tokens(split), batch_size, block_size, rng)
        n = self.num_examples(split)
        if n == 0:
            raise DataError(f"split {split!r} of {self.folder} has no examples")
        _check_sizes(batch_size, block_size)
        ks = rng.integers(0, n, size=batch_size)
        return self.example_batch(split, ks, block_size, loss_on=loss_on)

    def example_batch(
        self, split: str, ks: Sequence[int], block_size: int, *, loss_on: str = "response"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The padded batch of examples `ks` (collate_examples)."""
        return collate_examples(
            [self.example(split, int(k)) for k in ks], block_size, self.pad_id, loss_on=loss_on
        )

    def check(self) -> None:
        """DataError unless every file of every split agrees with meta.json (sizes, example
        offsets): a truncated or edited folder is refused before training, not met mid-run."""
        for split in self.splits:
            n = self.num_tokens(split)
            self.tokens(split)
            if self.layout != "examples":
                continue
            idx = self._array(split, "_idx", np.dtype(np.uint64))
            self._array(split, "_mask", np.dtype(np.uint8))
            if len(idx) and (int(idx[0]) != 0 or int(idx[-1]) != n
                             or bool(np.any(np.diff(idx.astype(np.int64)) < 0))):
                raise DataError(f"{self.folder / (split + '_idx.bin')}: example offsets do not "
                                f"match meta.json's {n:,} tokens; {self.fix()}")

    def fix(self) -> str:
        """How to prepare this folder again, as a command when meta.json says how."""
        source, settings = self.meta.get("source") or {}, self.meta.get("settings") or {}
        kind = settings.get("tokenizer")
        if not source.get("path") or not isinstance(kind, str):
            return "prepare it again (or remove it: train and finetune prepare a named " \
                   "dataset again when its folder is gone)"
        flags = [f"--input {source['path']}", f"--format {source.get('format', 'text')}",
                 f"--tokenizer {kind}", f"--out {self.folder}", "--force"]
        for key, default in (("vocab_size", None), ("min_freq", 1), ("val_fraction", 0.1),
                             ("test_fraction", 0.0), ("seed", 1337)):
            if settings.get(key, default) != default:
                flags.insert(-2, f"--{key.replace('_', '-')} {settings[key]}")
        if self.meta.get("name"):
            flags.insert(-2, f"--name {self.meta['name']}")
        return f"prepare it again: python -m numpy_gpt prepare {' '.join(flags)}"

    def _split_meta(self, split: str) -> dict[str, Any]:
        splits = self.meta["splits"]
        if split not in splits:
            raise DataError(f"{self.folder} has no split {split!r}; it has {list(splits)}")
        return splits[split]

    def _array(self, split: str, suffix: str, dtype: np.dtype) -> np.ndarray:
        key = split + suffix
        if key not in self._open:
            sm = self._split_meta(split)
            if suffix == "_idx":
                count = int(sm.get("examples") or 0) + 1
            else:
                count = int(sm["tokens"])
            file = self.folder / f"{key}.bin"
            if not file.is_file():
                raise DataError(f"missing {file}; {self.fix()}")
            if file.stat().st_size != count * dtype.itemsize:
                raise DataError(
                    f"{file} has {file.stat().st_size:,} bytes but meta.json expects "
                    f"{count * dtype.itemsize:,} ({count:,} x {dtype.itemsize}): the prepared "
                    f"data is truncated or corrupt (changed since it was prepared); {self.fix()}"
                )
            # np.memmap cannot map an empty file.
            self._open[key] = (
                np.memmap(file, dtype=dtype, mode="r") if count else np.zeros(0, dtype)
            )
        return self._open[key]


class ExampleLoader:
    """Epochs over the examples of a split in a seeded permutation, for fine-tuning.

    Epoch e uses permutation `default_rng([seed, e])`, so `state_dict()` = {seed, epoch,
    cursor} restores the exact position. A batch that runs past the end of an epoch continues
    into the next one.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        split: str,
        batch_size: int,
        block_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        loss_on: str = "response",
    ) -> None:
        _check_sizes(batch_size, block_size)
        self.dataset, self.split = dataset, split
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.shuffle, self.loss_on = int(seed), shuffle, loss_on
        self.n = dataset.num_examples(split)
        if self.n == 0:
            raise DataError(f"split {split!r} of {dataset.folder} has no examples")
        self.epoch, self.cursor = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        ks: list[int] = []
        order = self._order(self.epoch)
        while len(ks) < self.batch_size:
            take = min(self.batch_size - len(ks), self.n - self.cursor)
            ks.extend(order[self.cursor : self.cursor + take].tolist())
            self.cursor += take
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                order = self._order(self.epoch)
        return self.dataset.example_batch(self.split, ks, self.block_size, loss_on=self.loss_on)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.cursor = (int(state[k]) for k in ("seed", "epoch", "cursor"))


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """meta.json of a prepared folder, checked for the fields readers rely on."""
    file = Path(folder) / META_FILE
    if not file.is_file():
        raise DataError(
            f"no prepared dataset at {folder} (missing {META_FILE}); run "
            f"`python -m numpy_gpt prepare <dataset> --out {folder}` first"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{file} is not valid JSON ({e}); prepare the dataset again") from None
    missing = [k for k in ("format_version", "layout", "vocab_size", "dtype", "splits")
               if k not in meta]
    if missing:
        raise DataError(f"{file} lacks {missing}; prepare the dataset again")
    if meta["format_version"] != DATA_FORMAT_VERSION or meta["layout"] not in LAYOUTS:
        raise DataError(
            f"{file}: format_version {meta['format_version']!r} / layout {meta['layout']!r} "
            f"not supported (this code reads version {DATA_FORMAT_VERSION}); prepare it again"
        )
    return meta


def _check_sizes(batch_size: int, block_size: int) -> None:
    if batch_size < 1 or block_size < 1:
        raise DataError(
            f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}"
        )
