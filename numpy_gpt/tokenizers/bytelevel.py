"""What the two byte-level BPE kinds (bpe, gpt2) share: the split pattern, the per-chunk cache
and byte decoding.

Text is first split into chunks by GPT-2's regex (contractions, letters with an optional
leading space, numbers, punctuation, whitespace), merges never cross a chunk boundary, and each
chunk's UTF-8 bytes are merged on their own. Natural text repeats its chunks ("the", " and")
over and over, so the ids of every chunk seen are cached and each distinct word is merged
once. Decoding concatenates the tokens' bytes and decodes UTF-8 with "replace", as tiktoken
does (a prefix of a multi-byte character decodes to U+FFFD).

Deliberately omits: the GPT-4 (cl100k) pattern; a bounded LRU (the cache is simply cleared
when it grows past CACHE_MAX entries).
Ref: openai/gpt-2 src/encoder.py (pattern, cache); karpathy/minbpe regex.py; tiktoken.
"""

from __future__ import annotations

import regex

from .base import Tokenizer, check_ids

# GPT-2's pattern as tiktoken writes it for "gpt2" (r50k_base): the same alternatives as
# encoder.py's "'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|...", with the contractions grouped.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
CACHE_MAX = 1 << 20


def utf8_bytes(text: str) -> bytes:
    """UTF-8 bytes of `text`; a lone surrogate (not valid Unicode) becomes U+FFFD, as tiktoken
    does, so any Python str can be encoded."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


class ByteLevelTokenizer(Tokenizer):
    """Base of BPETokenizer and GPT2Tokenizer: subclasses set `self.token_bytes` (id -> bytes
    for every ordinary id) and implement `_merge_chunk(bytes) -> list[int]`."""

    pattern: str = GPT2_SPLIT_PATTERN
    token_bytes: list[bytes]

    def __init__(self, special_tokens: dict[str, int] | None, pattern: str) -> None:
        super().__init__(special_tokens)
        self.pattern = pattern
        self._compiled = regex.compile(pattern)
        self._cache: dict[str, list[int]] = {}

    def _merge_chunk(self, chunk: bytes) -> list[int]:
        raise NotImplementedError

    def split_chunks(self, text: str) -> list[str]:
        """The regex chunks of `text` (merges never cross them)."""
        return self._compiled.findall(text)

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        cache = self._cache
        if len(cache) > CACHE_MAX:
            cache.clear()
        ids: list[int] = []
        for chunk in self._compiled.findall(text):
            cached = cache.get(chunk)
            if cached is None:
                cached = cache[chunk] = self._merge_chunk(utf8_bytes(chunk))
            ids.extend(cached)
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        """The raw bytes of `ids` (special ids give their UTF-8 strings)."""
        out = []
        n = len(self.token_bytes)
        for i in ids:
            i = int(i)
            if 0 <= i < n:
                out.append(self.token_bytes[i])
            elif i in self.inverse_special:
                out.append(self.inverse_special[i].encode("utf-8"))
            else:
                check_ids([i], self.vocab_size, self.kind)
                raise AssertionError("unreachable: a gap in the id space")
        return b"".join(out)

    def decode(self, ids: list[int]) -> str:  # type: ignore[override]
        # Join the bytes first: a multi-byte character may be split across tokens, and
        # decoding each token on its own would turn its halves into two U+FFFD.
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
