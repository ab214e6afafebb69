"""prepare: raw text / CSV / JSON -> tokenizer + token files, the folder that
numpy_gpt.data.dataset reads.

Input formats:
  text    plain UTF-8 text. Without `<|endoftext|>` markers it is one stream split by position
          (the first 90 % train, the rest val, as nanoGPT); with them it is a list of documents
          split by document (seeded), each written followed by the tokenizer's end-of-text id.
  csv     dialogue pairs, columns `question` and `answer`; a row whose question repeats the
          previous row's answer continues that conversation (roles alternate user/assistant).
  alpaca  a JSON list of {instruction, input, output} (input may be empty or absent).
  jsonl   one {"messages": [{"role", "content"}, ...]} conversation per line.
csv/alpaca/jsonl give an "examples" folder (per-example offsets and a response mask; see
numpy_gpt.data.dataset) split by example with a seeded permutation; templates live in chat_format.

Tokenizers: char, word and bpe are built from the whole input (nanoGPT builds the char vocab
from all of Tiny Shakespeare); gpt2 is loaded from the data dirs. Every file is written to a
temporary name and renamed; meta.json is removed first and written last, so a folder with a
meta.json is always complete.

Named datasets (numpy_gpt.data.datasets) are prepared with `prepare_dataset(name)` into
out/data/<name>-<tokenizer>[-<options>] (`prepared_folder`); the command line is
numpy_gpt/cli/prepare.py.

Deliberately omits: streaming corpora larger than memory, parallel encoding, deduplication.
Ref: karpathy/nanoGPT data/shakespeare_char/prepare.py and data/openwebtext/prepare.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..files.run_lock import RunLock
from ..files.safe_io import WriteError, stage_file, writing
from ..tokenizers import BPETokenizer, CharTokenizer, Tokenizer, TokenizerError, WordTokenizer
from . import chat_format
from .chat_format import Segment
from .dataset import (
    DATA_FORMAT_VERSION,
    META_FILE,
    TOKENIZER_FILE,
    DataError,
    TokenDataset,
    token_dtype,
)
from .datasets import (
    dataset_file,
    get_spec,
    gpt2_tokenizer,
    parse_alpaca,
    parse_dialogue_csv,
    parse_jsonl,
    read_text_file,
    sha256_file,
)
from .encode import encode_documents, encode_many, encode_stream, split_items

FORMATS = ("text", "csv", "alpaca", "jsonl")
TOKENIZER_KINDS = ("char", "word", "bpe", "gpt2")
EXTENSION_FORMATS = {".txt": "text", ".csv": "csv", ".json": "alpaca", ".jsonl": "jsonl"}
DOC_SEPARATOR = "<|endoftext|>"
DEFAULT_BPE_VOCAB = 512
SPLITS = ("train", "val", "test")


# ---- tokenizer ---------------------------------------------------------------------------------
def eot_for(kind: str) -> str:
    """The end-of-text / end-of-turn token each kind uses."""
    return "<END>" if kind == "word" else DOC_SEPARATOR


def build_tokenizer(
    kind: str,
    text: str,
    *,
    vocab_size: int | None = None,
    special_tokens: Iterable[str] = (),
    min_freq: int = 1,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Tokenizer:
    """A tokenizer of `kind` trained on `text` (gpt2: loaded from the data dirs). What the
    tokenizer cannot be built with (a vocabulary too small for its special tokens) is a
    DataError: the settings do not fit this data."""
    try:
        return _build_tokenizer(kind, text, vocab_size, list(special_tokens), min_freq,
                                data_dir, progress)
    except TokenizerError as e:
        raise DataError(str(e)) from None


def _build_tokenizer(kind: str, text: str, vocab_size: int | None, specials: list[str],
                     min_freq: int, data_dir: str | os.PathLike | None, progress: bool
                     ) -> Tokenizer:
    if kind == "char":
        if vocab_size is not None:
            raise DataError("--vocab-size applies to the bpe and word tokenizers, not char")
        return CharTokenizer.train(text, special_tokens=specials)
    if kind == "word":
        # <PAD>, <UNK>, <END> always; any other requested special tokens after them.
        extra = [s for s in specials if s not in ("<PAD>", "<UNK>", "<END>")]
        return WordTokenizer.train(
            text, vocab_size, min_freq=min_freq,
            special_tokens=["<PAD>", "<UNK>", "<END>", *extra],
        )
    if kind == "bpe":
        size = DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size
        return BPETokenizer.train(text, size, special_tokens=specials, progress=progress)
    if kind == "gpt2":
        if vocab_size is not None:
            raise DataError("--vocab-size applies to the bpe and word tokenizers, not gpt2")
        return gpt2_tokenizer(data_dir)
    raise DataError(f"unknown tokenizer {kind!r}; choose one of {list(TOKENIZER_KINDS)}")


# ---- writing ---------------------------------------------------------------------------------
def write_folder(
    out: Path,
    tok: Tokenizer,
    splits: dict[str, dict[str, np.ndarray | None]],
    meta: dict[str, Any],
) -> None:
    """Write <split>.bin (+ _idx/_mask), tokenizer.json and, last, meta.json.

    Every file is first written whole under a temporary name, so a full disk fails before
    anything in `out` changes (a safe_io.WriteError; the folder is as it was). Then meta.json
    is removed, the files are renamed into place (renames need no space) and meta.json is
    renamed in last: a folder with a meta.json is always complete and consistent.
    """
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tok.vocab_size)
    staged: dict[str, Path] = {}
    try:
        for split, arrays in splits.items():
            for suffix, arr in arrays.items():
                if arr is None:
                    continue
                if suffix == "":
                    arr = arr.astype(dtype)
                name = f"{split}{suffix}.bin"
                staged[name] = stage_file(out / name, arr.tobytes())
        staged[TOKENIZER_FILE] = stage_file(
            out / TOKENIZER_FILE, (json.dumps(tok.to_dict()) + "\n").encode("utf-8"))
        meta_tmp = stage_file(out / META_FILE,
                              (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        staged[META_FILE] = meta_tmp
        with writing(out / META_FILE):
            (out / META_FILE).unlink(missing_ok=True)  # incomplete from here to the end
            for name, tmp in staged.items():
                if name != META_FILE:
                    os.replace(tmp, out / name)
            for split in SPLITS:  # files of an earlier run with another layout or split
                for suffix in ("", "_idx", "_mask"):
                    name = f"{split}{suffix}.bin"
                    if name not in staged:
                        (out / name).unlink(missing_ok=True)
            os.replace(meta_tmp, out / META_FILE)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise


# ---- the whole pipeline ------------------------------------------------------------------------
def infer_format(path: Path) -> str:
    fmt = EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path.name} from its extension; pass --format "
            f"{{{','.join(FORMATS)}}}"
        )
    return fmt


def prepare(input: str | os.PathLike, out_dir: str | os.PathLike, **options: Any) -> Path:
    """Tokenize `input` into the prepared folder `out_dir` (prepare_unlocked's options), with
    the folder locked: two runs preparing it at once take turns, and the second finds it up to
    date (numpy_gpt.files.run_lock; it waits rather than fails)."""
    with RunLock(out_dir, what="preparation", wait=True):
        return prepare_unlocked(input, out_dir, **options)


def prepare_unlocked(
    input: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    tokenizer: str | Tokenizer = "gpt2",
    vocab_size: int | None = None,
    min_freq: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 1337,
    data_dir: str | os.PathLike | None = None,
    name: str | None = None,
    progress: bool = False,
    reuse: bool = False,
) -> Path:
    """Tokenize `input` into the prepared folder `out_dir` (layout: numpy_gpt.data.dataset)
    and return it. `tokenizer` is a kind to build from the input, or a ready Tokenizer (e.g. a
    checkpoint's, for fine-tuning) used as it is. With `reuse`, a folder already prepared from
    the same bytes with the same settings is returned untouched."""
    path, out = Path(input), Path(out_dir)
    fmt = fmt or infer_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    given = tokenizer if isinstance(tokenizer, Tokenizer) else None
    if given is None and tokenizer not in TOKENIZER_KINDS:
        raise DataError(f"unknown tokenizer {tokenizer!r}; choose one of {list(TOKENIZER_KINDS)}")
    kind = given.kind if given is not None else tokenizer
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be in "
            f"[0, 1) and sum to less than 1"
        )
    text = read_text_file(path)
    settings = {
        "version": DATA_FORMAT_VERSION, "format": fmt,
        "tokenizer": (kind if given is None
                      else {"kind": kind, "sha256": tokenizer_fingerprint(given)}),
        "vocab_size": vocab_size, "min_freq": min_freq, "val_fraction": val_fraction,
        "test_fraction": test_fraction, "seed": seed,
    }
    sha = sha256_file(path)
    if reuse and _up_to_date(out, sha, settings):
        return out

    eot = eot_for(kind) if given is None else (given.eot_token or eot_for(kind))
    build = {"vocab_size": vocab_size, "min_freq": min_freq, "data_dir": data_dir,
             "progress": progress}
    arrays: dict[str, dict[str, np.ndarray | None]] = {}
    n_items: dict[str, int | None] = {}
    if fmt == "text" and DOC_SEPARATOR not in text:
        # One stream, split by position: train = text[:90 %], val = the rest (nanoGPT).
        layout, by = "stream", "position"
        # char keeps nanoGPT's exact vocabulary (no special token) on plain text.
        tok = given if given is not None else build_tokenizer(
            kind, text, special_tokens=[] if kind == "char" else [eot], **build)
        n = len(text)
        cut1 = int(n * (1 - val_fraction - test_fraction))
        cut2 = int(n * (1 - test_fraction))
        parts = {"train": text[:cut1], "val": text[cut1:cut2], "test": text[cut2:]}
        for split, part in parts.items():
            if split == "test" and test_fraction == 0:
                continue
            if not part and (split == "train" or val_fraction > 0):
                raise DataError(f"{path}: too little text to make a {split} split")
            arrays[split] = {"": encode_stream(tok, part, progress)}
            n_items[split] = None
    else:
        if fmt == "text":  # documents separated by <|endoftext|>
            layout, by = "stream", "document"
            items = [d.strip() for d in text.split(DOC_SEPARATOR)]
            items = [d for d in items if d]
            train_text = "\n".join(items)
        else:
            layout, by = "examples", "example"
            items = _examples(text, fmt, eot, str(path))
            train_text = "\n".join(
                chat_format.render([s for s in segs if not s.special]) for segs in items
            )
        tok = given if given is not None else build_tokenizer(
            kind, train_text, special_tokens=[eot], **build)
        if tok.eot_id is None:
            raise DataError(f"the {tok.kind} tokenizer has no end-of-text token {eot!r}")
        for split, idx in split_items(len(items), val_fraction, test_fraction, seed).items():
            if split == "test" and test_fraction == 0:
                continue
            chosen = [items[i] for i in idx]
            if layout == "stream":
                ids, _ = encode_documents(tok, chosen, tok.eot_id, progress)
                arrays[split] = {"": ids}
            else:
                ids, offsets, mask = encode_many(
                    chosen, lambda segs: chat_format.encode_segments(tok, segs), progress
                )
                arrays[split] = {"": ids, "_idx": offsets, "_mask": mask}
            n_items[split] = len(chosen)

    fractions = {"train": round(1 - val_fraction - test_fraction, 12), "val": val_fraction}
    if test_fraction:
        fractions["test"] = test_fraction
    meta = {
        "format_version": DATA_FORMAT_VERSION,
        "name": name or path.stem,
        "layout": layout,
        "tokenizer": tok.kind,
        "tokenizer_file": TOKENIZER_FILE,
        "vocab_size": tok.vocab_size,
        "dtype": token_dtype(tok.vocab_size).name,
        "eot_id": tok.eot_id,
        "pad_id": tok.special_tokens.get("<PAD>", tok.eot_id if tok.eot_id is not None else 0),
        "splits": {s: _split_summary(a, n_items[s]) for s, a in arrays.items()},
        "source": {"path": str(path.resolve()), "sha256": sha, "bytes": path.stat().st_size,
                   "format": fmt},
        "split": {"by": by, "seed": seed, "fractions": fractions},
        "settings": settings,
    }
    try:
        write_folder(out, tok, arrays, meta)
    except WriteError as e:
        state = ("is unchanged" if (out / META_FILE).is_file() else "was not written")
        raise e.with_advice(f"the prepared folder {out} {state}; free space and prepare again"
                            ) from None
    return out


def _split_summary(arrays: dict[str, np.ndarray | None], n: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"tokens": len(arrays[""]), "examples": n}
    offsets = arrays.get("_idx")
    if offsets is not None and len(offsets) > 1:
        # Longest example: block_size should exceed it, or at least its prompt (see data.py).
        out["max_example_tokens"] = int(np.diff(offsets.astype(np.int64)).max())
    return out


def _examples(text: str, fmt: str, eot: str, where: str) -> list[list[Segment]]:
    if fmt == "csv":
        return [chat_format.format_conversation(c, eot) for c in parse_dialogue_csv(text, where)]
    if fmt == "jsonl":
        return [chat_format.format_conversation(c, eot) for c in parse_jsonl(text, where)]
    return [chat_format.format_alpaca(*ex, eot=eot) for ex in parse_alpaca(text, where)]


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """A fingerprint of a given tokenizer, so a folder encoded with another one is redone."""
    return hashlib.sha256(json.dumps(tok.to_dict(), sort_keys=True).encode()).hexdigest()


def _up_to_date(out: Path, sha: str, settings: dict[str, Any]) -> bool:
    """Whether `out` was prepared from these bytes with these settings and is intact."""
    try:
        ds = TokenDataset(out)
        if ds.meta.get("settings") != settings or ds.meta["source"]["sha256"] != sha:
            return False
        for split in ds.splits:  # opening checks every file's size against meta.json
            ds.tokens(split)
            if ds.layout == "examples":
                ds.example(split, 0)
        return (out / ds.meta.get("tokenizer_file", TOKENIZER_FILE)).is_file()
    except (DataError, KeyError, TypeError, IndexError):
        return False


# ---- named datasets ------------------------------------------------------------------------------
def prepare_dataset(
    name: str,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
    *,
    tokenizer: str | None = None,
    vocab_size: int | None = None,
    min_freq: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 1337,
    force: bool = False,
) -> Path:
    """Prepare a named dataset into `out_dir` (default: prepared_folder) and return the folder.

    `tokenizer` overrides the dataset's default kind; the other options are prepare's. An
    existing folder is reused when its meta.json records the same source sha256 and
    settings (and its files are intact), unless `force`.
    """
    spec = get_spec(name)
    source = dataset_file(name, data_dir)
    kind = tokenizer or spec.tokenizer
    out = Path(out_dir) if out_dir is not None else prepared_folder(
        name, kind, vocab_size=vocab_size, min_freq=min_freq, val_fraction=val_fraction,
        test_fraction=test_fraction, seed=seed)
    return prepare(
        source, out, fmt=spec.format, tokenizer=kind,
        vocab_size=vocab_size, min_freq=min_freq, val_fraction=val_fraction,
        test_fraction=test_fraction, seed=seed, data_dir=data_dir, name=name,
        progress=progress, reuse=not force,
    )


PREPARED_ROOT = Path("out") / "data"
# prepare's option defaults; an option that differs from its default is spelled in the folder
OPTION_DEFAULTS = {"vocab_size": None, "min_freq": 1, "val_fraction": 0.1, "test_fraction": 0.0,
                   "seed": 1337}
OPTION_TAGS = {"vocab_size": "v", "min_freq": "min", "val_fraction": "val",
               "test_fraction": "test", "seed": "seed"}


def prepared_folder(name: str, tokenizer: str, **options: Any) -> Path:
    """Where a named dataset prepared with `tokenizer` and prepare's `options` lives:
    out/data/<name>-<tokenizer>, plus -<tag><value> for each option that is not its default
    (e.g. out/data/dialogue-word, out/data/tinystories-bpe-v1024-seed7)."""
    parts = [name, tokenizer]
    for key, value in options.items():
        if value != OPTION_DEFAULTS[key]:
            parts.append(f"{OPTION_TAGS[key]}{value:g}" if isinstance(value, float)
                         else f"{OPTION_TAGS[key]}{value}")
    return PREPARED_ROOT / "-".join(parts)
