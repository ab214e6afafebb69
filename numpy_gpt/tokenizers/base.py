"""The Tokenizer base class every kind (char, word, bpe, gpt2) implements.

One interface, after minbpe's base.py: `encode(text) -> list[int]`, `decode(ids) -> str`,
`vocab_size`, `special_tokens` (str -> id), `to_dict()` / `from_dict()` and `save(path)` as
JSON (never pickle; a checkpoint stores `to_dict()` as tokenizer.json). `load_tokenizer` in
`numpy_gpt.tokenizers` picks the class from the JSON's "kind".

Special tokens follow tiktoken's rules: by default (`allowed_special="none_raise"`) text that
contains a special token's string is an error, so user text can never smuggle in control
tokens; `"all"` (or a set of names) turns those strings into their ids; `"none"` encodes them as
ordinary text. A subclass implements `_encode_ordinary` (text without special tokens) and
either `_decode_ordinary` or a whole `decode`.

Deliberately omits: normalisation (NFC etc.), offsets/alignment, batch encoding.
Ref: karpathy/minbpe minbpe/base.py; openai/tiktoken core.py (allowed/disallowed special).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, ClassVar

import regex

FORMAT_VERSION = 1
# The special token that ends a document or a chat turn, in order of preference.
EOT_CANDIDATES = ("<|endoftext|>", "<END>")


class TokenizerError(ValueError):
    """Bad tokenizer input or file (unknown character, id out of range, bad JSON); one line.
    (numpy_gpt.data.prepare reports it as a DataError: the data could not be tokenized.)"""


class Tokenizer:
    """Abstract base. Subclasses set `kind` and implement the `_...` hooks below."""

    kind: ClassVar[str] = ""

    def __init__(self, special_tokens: dict[str, int] | None = None) -> None:
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.inverse_special: dict[int, str] = {i: s for s, i in self.special_tokens.items()}
        self._special_pattern = _special_regex(self.special_tokens)

    # ---- hooks for subclasses ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids this tokenizer can produce (ordinary + special)."""
        raise NotImplementedError

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        """Ids of text that contains no special tokens; `offset` = its position in the input,
        for error messages."""
        raise NotImplementedError

    def _decode_ordinary(self, ids: list[int]) -> str:
        """Text of a run of ordinary (non-special) ids (used by the generic decode(); a kind
        that overrides decode() need not implement it)."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Kind-specific fields of to_dict()."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, **options: Any) -> Tokenizer:
        """A new tokenizer of this kind built from `text` (char, word, bpe; see each kind)."""
        raise TokenizerError(f"a {cls.kind or 'base'} tokenizer cannot be trained here")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a saved tokenizer, checking that it is of this kind (Tokenizer.load: any)."""
        from . import load_tokenizer  # the kind registry lives in the package

        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise TokenizerError(f"{path} holds a {tok.kind} tokenizer, not {cls.kind}")
        return tok

    # ---- the public interface ---------------------------------------------------------------
    def encode(self, text: str, allowed_special: str | Collection[str] = "none_raise") -> list[int]:
        """Token ids of `text`.

        allowed_special: "none_raise" (default, like tiktoken: a special token's string in the
        text is an error), "none" (encode such strings as ordinary text), "all", or a
        collection of the special-token strings to recognise (the others raise).
        """
        allowed = self._allowed(allowed_special)
        ids: list[int] = []
        for piece, start, is_special in self._split(text, allowed):
            if is_special:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self._encode_ordinary(piece, start))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text` with special-token strings treated as plain text."""
        return self._encode_ordinary(text, 0) if text else []

    def decode(self, ids: Collection[int]) -> str:
        """Text of `ids`; special ids decode to their strings. Unknown ids raise TokenizerError."""
        out: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            s = self.inverse_special.get(i)
            if s is None:
                run.append(i)
                continue
            if run:
                out.append(self._decode_ordinary(run))
                run = []
            out.append(s)
        if run:
            out.append(self._decode_ordinary(run))
        return self._join_decoded(out)

    def _join_decoded(self, parts: list[str]) -> str:
        return "".join(parts)

    @property
    def eot_token(self) -> str | None:
        """The special token that ends a document / chat turn, or None if there is none."""
        for s in EOT_CANDIDATES:
            if s in self.special_tokens:
                return s
        return None

    @property
    def eot_id(self) -> int | None:
        s = self.eot_token
        return None if s is None else self.special_tokens[s]

    @property
    def unk_token(self) -> str | None:
        """The special token that unknown input becomes, or None (the kind covers any text, or
        unknown input is an error)."""
        return None

    def unknown_pieces(self, text: str) -> list[str]:
        """The pieces of `text` (words, characters) that encode(text, allowed_special="none")
        reads as unk_token, each once, in order of appearance; [] when there is no unk_token."""
        return []

    def model_vocab_size(self, pad_to: int = 64) -> int:
        """vocab_size rounded up to a multiple of `pad_to` (GPT-2: 50257 -> 50304, as nanoGPT),
        for a faster embedding/lm_head. The padding ids are never produced by encode and are
        rejected by decode."""
        if pad_to < 1:
            raise ValueError(f"pad_to must be >= 1, got {pad_to}")
        return -(-self.vocab_size // pad_to) * pad_to

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description that `load_tokenizer_dict` turns back into this tokenizer."""
        return {"kind": self.kind, "format_version": FORMAT_VERSION, **self._config()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write to_dict() as JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict()) + "\n")
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special={self.special_tokens})"

    # ---- helpers ----------------------------------------------------------------------------
    def _allowed(self, allowed_special: str | Collection[str]) -> tuple[set[str], bool]:
        """-> (specials to turn into ids, whether the remaining ones raise)."""
        if allowed_special == "all":
            return set(self.special_tokens), False
        if allowed_special == "none":
            return set(), False
        if allowed_special == "none_raise":
            return set(), True
        if isinstance(allowed_special, str):
            raise TypeError(
                f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
                f"tokens, got {allowed_special!r}"
            )
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise TokenizerError(
                f"allowed_special names {sorted(unknown)} which are not special tokens of this "
                f"tokenizer (it has {sorted(self.special_tokens)})"
            )
        return allowed, True

    def _split(
        self, text: str, allowed: tuple[set[str], bool]
    ) -> Iterator[tuple[str, int, bool]]:
        """Yield (piece, start offset, is_special) covering `text` in order."""
        names, raise_others = allowed
        if self._special_pattern is None or not (names or raise_others):
            yield text, 0, False
            return
        pos = 0
        for m in self._special_pattern.finditer(text):
            s = m.group()
            if s not in names:
                if raise_others:
                    raise TokenizerError(
                        f"the text contains the special token {s!r} at position {m.start()}; "
                        f"pass allowed_special='all' (or {{{s!r}}}) to encode it as a special "
                        f"token, or allowed_special='none' to encode it as plain text"
                    )
                continue  # ordinary text: stays inside the surrounding piece
            yield text[pos : m.start()], pos, False
            yield s, m.start(), True
            pos = m.end()
        yield text[pos:], pos, False


def _special_regex(special_tokens: dict[str, int]) -> regex.Pattern | None:
    if not special_tokens:
        return None
    # Longest first, so a special token that is a prefix of another never wins.
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(s) for s in alternatives))


def split_special(text: str, specials: Collection[str]) -> list[str]:
    """The pieces of `text` between occurrences of the special strings (used for training, so
    special tokens never take part in vocabulary statistics)."""
    if not specials:
        return [text]
    pattern = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len)[::-1]))
    return pattern.split(text)


def check_special_tokens(special_tokens: Collection[str]) -> list[str]:
    """Validate a list of special-token strings: non-empty, distinct."""
    out = list(special_tokens)
    if any(not isinstance(s, str) or not s for s in out):
        raise TokenizerError(f"special tokens must be non-empty strings, got {out!r}")
    if len(set(out)) != len(out):
        raise TokenizerError(f"special tokens must be distinct, got {out!r}")
    return out


def check_ids(ids: list[int], vocab_size: int, what: str) -> None:
    """Raise one clear TokenizerError for the first id outside [0, vocab_size)."""
    for i in ids:
        if not 0 <= i < vocab_size:
            raise TokenizerError(
                f"id {i} is outside this {what} tokenizer's vocabulary (ids 0..{vocab_size - 1})"
                + (
                    "; ids past the vocabulary only pad the model's embedding and are never "
                    "produced by the tokenizer"
                    if i >= vocab_size
                    else ""
                )
            )


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, then rename it into place (a
    full disk: numpy_gpt.files.safe_io.WriteError, the old file kept)."""
    from ..files.safe_io import write_text_atomic as write

    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, text)
