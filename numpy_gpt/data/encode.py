"""encode: splitting items into train/val/test and encoding text to token ids, with progress.

    ids = encode_stream(tok, text)                        # one stream, piece by piece
    ids, offsets = encode_documents(tok, docs, eot_id)    # documents, each + end-of-text
    parts = split_items(n, 0.1, 0.0, seed)                # {split: sorted indices}

Long text is encoded in pieces cut at boundaries where the GPT-2 split pattern cannot span
(text_pieces), so the ids equal those of encoding the whole text while a progress bar moves.
Used by numpy_gpt.data.prepare.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import regex

from ..tokenizers import Tokenizer
from .dataset import DataError

PIECE_CHARS = 1 << 16  # encode long text in pieces of about this many characters (progress)


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes of n items; a non-zero fraction gets at least one item."""
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} documents/examples are too few to split (val {n_val}, test {n_test}); "
            f"use more data or a smaller --val-fraction"
        )
    return n - n_val - n_test, n_val, n_test


def split_items(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """{split: sorted indices} of a seeded permutation of range(n)."""
    _, n_val, n_test = split_counts(n, val_fraction, test_fraction)
    perm = np.random.default_rng(seed).permutation(n)
    parts = {"train": perm[n_val + n_test :], "val": perm[:n_val],
             "test": perm[n_val : n_val + n_test]}
    return {k: np.sort(v) for k, v in parts.items()}


# A boundary after "\n" preceded and followed by non-whitespace: no regex chunk of the GPT-2
# pattern spans it and the lookahead `\s+(?!\S)` sees the same thing on both sides, so
# encoding the two sides separately gives exactly the ids of encoding the whole.
_SAFE_BOUNDARY = regex.compile(r"(?<=\S\n)(?=\S)")


def text_pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """`text` cut at safe boundaries into pieces of about `size` characters."""
    pieces, start = [], 0
    while len(text) - start > size:
        m = _SAFE_BOUNDARY.search(text, start + size)
        if m is None:
            break
        pieces.append(text[start : m.start()])
        start = m.start()
    pieces.append(text[start:])
    return pieces


def _bar(progress: bool, total: int, desc: str, unit: str):
    if not progress:
        return None
    from tqdm import tqdm

    # delay: the bar appears only on inputs that take a while (stderr, tqdm's default).
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, delay=0.5, file=sys.stderr)


def encode_stream(tok: Tokenizer, text: str, progress: bool = False) -> np.ndarray:
    """Ids of plain text (special-token strings are plain text here), piece by piece."""
    bar = _bar(progress, len(text), "encode", "char")
    out = []
    for piece in text_pieces(text):
        out.append(np.asarray(tok.encode_ordinary(piece), dtype=np.int64))
        if bar is not None:
            bar.update(len(piece))
    if bar is not None:
        bar.close()
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def encode_documents(
    tok: Tokenizer, docs: list[str], eot_id: int, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets): every document's ids followed by end-of-text."""

    def encode(doc: str) -> tuple[list[int], None]:
        return tok.encode_ordinary(doc) + [eot_id], None

    return encode_many(docs, encode, progress, unit="doc")[:2]


def encode_many(
    items: list[Any],
    encode: Callable[[Any], tuple[list[int], list[int] | None]],
    progress: bool,
    unit: str = "ex",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Concatenate encode(item) over items -> (ids, offsets (n+1), mask or None)."""
    bar = _bar(progress, len(items), "encode", unit)
    ids: list[int] = []
    mask: list[int] = []
    offsets = [0]
    has_mask = False
    for item in items:
        part, part_mask = encode(item)
        ids += part
        if part_mask is not None:
            mask += part_mask
            has_mask = True
        offsets.append(len(ids))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return (
        np.asarray(ids, dtype=np.int64),
        np.asarray(offsets, dtype=np.uint64),
        np.asarray(mask, dtype=np.uint8) if has_mask else None,
    )
