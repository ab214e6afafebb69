"""WordTokenizer: one token per word or punctuation mark, with `<PAD>`, `<UNK>`, `<END>`.

Text is split into words (letters/digits/underscore, with inner apostrophes kept: "don't",
"i'm") and single punctuation marks; whitespace is dropped. Optionally lowercased. The
vocabulary is the special tokens (`<PAD>` = 0, `<UNK>` = 1, `<END>` = 2, then any extra ones)
followed by the words by descending frequency (ties alphabetical, so it is deterministic), cut
by `min_freq` and by `vocab_size` (the total, specials included). Unknown words map to `<UNK>`.
decode() joins tokens with spaces except before closing punctuation and after opening brackets.

Deliberately omits: exact round trips (whitespace, case and unknown words are lost),
stemming, sub-word fallback (that is what the bpe kind is for).
Ref: the classic word-level LM vocabularies (e.g. PyTorch's word_language_model example).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

import regex

from .base import Tokenizer, TokenizerError, check_ids, check_special_tokens, split_special

PAD, UNK, END = "<PAD>", "<UNK>", "<END>"
DEFAULT_SPECIALS = (PAD, UNK, END)
WORD_PATTERN = r"\w+(?:'\w+)*|[^\w\s]"
NO_SPACE_BEFORE = set(".,!?;:%)]}")
NO_SPACE_AFTER = set("([{")


class WordTokenizer(Tokenizer):
    kind = "word"

    def __init__(
        self,
        words: list[str],
        special_tokens: Collection[str] = DEFAULT_SPECIALS,
        lowercase: bool = True,
    ):
        """`words`: the ordinary vocabulary in id order; ids follow the special tokens, which
        must include `<UNK>`."""
        specials = check_special_tokens(special_tokens)
        if UNK not in specials:
            raise TokenizerError(f"a word tokenizer needs {UNK!r} among its special tokens")
        if len(set(words)) != len(words) or set(words) & set(specials):
            raise TokenizerError("WordTokenizer: words must be distinct and not special tokens")
        super().__init__({s: i for i, s in enumerate(specials)})
        self.words = list(words)
        self.lowercase = lowercase
        self._pattern = regex.compile(WORD_PATTERN)
        self._stoi = {w: len(specials) + i for i, w in enumerate(self.words)}
        self._itos = specials + self.words

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int | None = None,
        *,
        min_freq: int = 1,
        lowercase: bool = True,
        special_tokens: Collection[str] = DEFAULT_SPECIALS,
    ) -> WordTokenizer:
        """Build the vocabulary from `text`. `vocab_size`: the maximum total size, special
        tokens included (None: every word seen at least `min_freq` times)."""
        specials = check_special_tokens(special_tokens)
        if vocab_size is not None and vocab_size <= len(specials):
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small for the {len(specials)} special tokens "
                f"{specials} plus at least one word; use --vocab-size > {len(specials)}"
            )
        pattern = regex.compile(WORD_PATTERN)
        counts: Counter[str] = Counter()
        for piece in split_special(text, specials):
            counts.update(pattern.findall(piece.lower() if lowercase else piece))
        ranked = sorted(
            (w for w, c in counts.items() if c >= min_freq and w not in specials),
            key=lambda w: (-counts[w], w),
        )
        if vocab_size is not None:
            ranked = ranked[: vocab_size - len(specials)]
        return cls(ranked, specials, lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get(PAD)

    def tokenize(self, text: str) -> list[str]:
        """The word/punctuation strings encode() looks up (after lowercasing)."""
        return self._pattern.findall(text.lower() if self.lowercase else text)

    @property
    def unk_token(self) -> str:
        return UNK

    def unknown_pieces(self, text: str) -> list[str]:
        return list(dict.fromkeys(w for w in self.tokenize(text) if w not in self._stoi))

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        unk = self.special_tokens[UNK]
        return [self._stoi.get(w, unk) for w in self.tokenize(text)]

    def decode(self, ids: Collection[int]) -> str:
        ids = [int(i) for i in ids]
        check_ids(ids, self.vocab_size, self.kind)
        out: list[str] = []
        for i in ids:
            tok = self._itos[i]
            # subtle: no space before ".,!?" etc. and none after an opening bracket.
            if out and tok not in NO_SPACE_BEFORE and out[-1] not in NO_SPACE_AFTER:
                out.append(" ")
            out.append(tok)
        return "".join(out)

    def _config(self) -> dict[str, Any]:
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        return {"words": self.words, "special_tokens": specials, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        return cls(
            list(d["words"]),
            d.get("special_tokens", DEFAULT_SPECIALS),
            lowercase=bool(d.get("lowercase", True)),
        )
