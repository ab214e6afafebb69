"""Tokenizers: char, word, byte-level BPE (trained here) and GPT-2's BPE, behind one interface.

    tok = CharTokenizer.train(text)                       # or WordTokenizer / BPETokenizer.train
    tok = GPT2Tokenizer.from_files("encoder.json", "vocab.bpe")
    ids = tok.encode(text); text = tok.decode(ids); tok.save("tokenizer.json")
    tok = load_tokenizer("tokenizer.json")                # the class comes from the JSON's "kind"
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import Tokenizer, TokenizerError
from .bpe import BPETokenizer
from .char import CharTokenizer
from .gpt2 import GPT2Tokenizer
from .word import WordTokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {
    cls.kind: cls for cls in (CharTokenizer, WordTokenizer, BPETokenizer, GPT2Tokenizer)
}


def load_tokenizer_dict(d: dict[str, Any]) -> Tokenizer:
    """The tokenizer described by `d` (a `Tokenizer.to_dict()`, e.g. a checkpoint's
    tokenizer.json already read)."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in TOKENIZERS:
        raise TokenizerError(
            f"unknown tokenizer kind {kind!r}; expected one of {sorted(TOKENIZERS)}"
        )
    try:
        return TOKENIZERS[kind].from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, TokenizerError):
            raise
        raise TokenizerError(f"bad {kind} tokenizer description: {e!r}") from None


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer JSON written by `Tokenizer.save` (or a checkpoint's tokenizer.json)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"no tokenizer file at {path}") from None
    except json.JSONDecodeError as e:
        raise TokenizerError(
            f"{path}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg})"
        ) from None
    return load_tokenizer_dict(d)


__all__ = [
    "TOKENIZERS",
    "BPETokenizer",
    "CharTokenizer",
    "GPT2Tokenizer",
    "Tokenizer",
    "TokenizerError",
    "WordTokenizer",
    "load_tokenizer",
    "load_tokenizer_dict",
]
