"""CharTokenizer: one token per Unicode character (code point), as nanoGPT's shakespeare_char.

The vocabulary is the sorted set of distinct characters of the training text, so Tiny
Shakespeare gives nanoGPT's 65 characters with the same ids (sorted by code point, '\\n' = 0,
' ' = 1, ...). Special tokens, if any, get the ids after the characters. A character outside
the vocabulary is an error naming it and its position, or maps to `<unk>` when the tokenizer
was trained with `unk=True`.

Encoding is vectorised: the text becomes a uint32 array of code points (UTF-32) and a
searchsorted into the sorted vocabulary gives the ids, which is also why ids == sorted order.

Deliberately omits: grapheme clusters (a combining accent is its own token), normalisation.
Ref: karpathy/nanoGPT data/shakespeare_char/prepare.py.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from .base import Tokenizer, TokenizerError, check_ids, check_special_tokens, split_special

UNK = "<unk>"


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: str, special_tokens: Collection[str] = (), unk: bool = False):
        """`chars`: the vocabulary, in id order (must be sorted and distinct). `unk`: map unknown
        characters to the special token `<unk>` (added to the special tokens if absent)."""
        if list(chars) != sorted(set(chars)):
            raise TokenizerError("CharTokenizer: chars must be sorted and distinct")
        specials = check_special_tokens(special_tokens)
        if unk and UNK not in specials:
            specials.append(UNK)
        self.chars = chars
        self.unk = unk
        super().__init__({s: len(chars) + i for i, s in enumerate(specials)})
        # Code points in id order: searchsorted(codes, c) is the id of character c.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int | None = None,
        *,
        special_tokens: Collection[str] = (),
        unk: bool = False,
    ) -> CharTokenizer:
        """Vocabulary = sorted distinct characters of `text` (special-token strings excluded).
        `vocab_size` is not a choice for this kind; if given it must equal the result."""
        specials = check_special_tokens(special_tokens)
        chars = "".join(sorted(set("".join(split_special(text, specials)))))
        tok = cls(chars, specials, unk=unk)
        if vocab_size is not None and vocab_size != tok.vocab_size:
            raise TokenizerError(
                f"a char tokenizer's vocabulary is the text's {tok.vocab_size} distinct "
                f"characters (+ special tokens); it cannot be set to {vocab_size}"
            )
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_tokens)

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        # surrogatepass: a lone surrogate is still one code point, and simply unknown here.
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, cps)
        found = ids < len(self._codes)
        found[found] = self._codes[ids[found]] == cps[found]
        if not found.all():
            if not self.unk:
                pos = int(np.argmin(found))
                ch = text[pos]
                raise TokenizerError(
                    f"character {ch!r} (U+{ord(ch):04X}) at position {offset + pos} is not in "
                    f"this char tokenizer's {len(self.chars)}-character vocabulary; rebuild the "
                    f"tokenizer on text that contains it, or build it with unk=True"
                )
            ids[~found] = self.special_tokens[UNK]
        return ids.tolist()

    @property
    def unk_token(self) -> str | None:
        return UNK if self.unk else None

    def unknown_pieces(self, text: str) -> list[str]:
        if not self.unk:
            return []
        known = set(self.chars)
        return list(dict.fromkeys(c for c in text if c not in known))

    def _decode_ordinary(self, ids: list[int]) -> str:
        check_ids(ids, self.vocab_size, self.kind)  # special ids never get here
        return "".join(self.chars[i] for i in ids)

    def _config(self) -> dict[str, Any]:
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        return {"chars": self.chars, "special_tokens": specials, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(d["chars"], d.get("special_tokens", ()), unk=bool(d.get("unk", False)))
