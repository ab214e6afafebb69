"""GPT2Tokenizer: OpenAI GPT-2's BPE (50257 ids), token-for-token identical to tiktoken "gpt2".

Built from OpenAI's two files: encoder.json (token string -> id, with bytes spelled in GPT-2's
printable `bytes_to_unicode` alphabet, e.g. "Ġ" for a space) and vocab.bpe (the 50000 merges).
`<|endoftext|>` = 50256 is the only special token.

Merging follows tiktoken rather than encoder.py: every token's rank is its id, and inside a
chunk the adjacent pair whose *concatenated bytes* have the lowest rank is merged first (the
leftmost on a tie), one occurrence at a time; a chunk that is itself a token is emitted
directly. For GPT-2 the two algorithms agree on ordinary text, but following tiktoken exactly
is what makes "identical ids" true by construction. vocab.bpe is therefore used only to check
that the two files belong together; a saved tokenizer embeds encoder.json's mapping (the
ranks), so a checkpoint's tokenizer.json is self-contained.

`model_vocab_size(64)` gives 50304, nanoGPT's padded vocabulary; decode() rejects the padding
ids 50257..50303 with a clear error.

Chunks longer than LONG_CHUNK bytes are merged with a heap (same order, O(n log n)), so a
huge "word" (base64, a DNA string) is not quadratic.

Deliberately omits: encoder.py's errors= options (decode always uses "replace", as tiktoken).
Ref: openai/gpt-2 src/encoder.py (bytes_to_unicode, pattern); openai/tiktoken src/lib.rs
(_byte_pair_merge) and load.py (data_gym_to_mergeable_bpe_ranks); nanoGPT model.py (50304).
"""

from __future__ import annotations

import heapq
import json
import os
from pathlib import Path
from typing import Any

from .base import TokenizerError
from .bytelevel import GPT2_SPLIT_PATTERN, ByteLevelTokenizer

ENDOFTEXT = "<|endoftext|>"
N_VOCAB = 50257
LONG_CHUNK = 128  # chunks longer than this (in bytes) merge with a heap instead of a scan


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (encoder.py): printable Latin-1
    bytes map to themselves, the other 68 bytes to chr(256 + k)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class GPT2Tokenizer(ByteLevelTokenizer):
    kind = "gpt2"

    def __init__(self, encoder: dict[str, int], special_tokens: dict[str, int] | None = None):
        """`encoder`: encoder.json's mapping (GPT-2 alphabet string -> id); entries that are
        special tokens (`<|endoftext|>`) may be included or passed in `special_tokens`."""
        specials = dict(special_tokens or {})
        if ENDOFTEXT in encoder:
            specials.setdefault(ENDOFTEXT, encoder[ENDOFTEXT])
        super().__init__(specials, GPT2_SPLIT_PATTERN)
        decoder = {c: b for b, c in bytes_to_unicode().items()}
        ordinary = {s: i for s, i in encoder.items() if s not in specials}
        n = len(ordinary)
        if sorted(ordinary.values()) != list(range(n)):
            raise TokenizerError(f"GPT-2 encoder ids must be exactly 0..{n - 1}")
        self.token_bytes = [b""] * n
        try:
            for s, i in ordinary.items():
                self.token_bytes[i] = bytes(decoder[c] for c in s)
        except KeyError as e:
            raise TokenizerError(
                f"GPT-2 encoder token {s!r} has character {e.args[0]!r} outside GPT-2's byte "
                f"alphabet; is this an encoder.json from OpenAI's GPT-2?"
            ) from None
        # tiktoken's "mergeable ranks": a token's bytes -> its id, which is its merge priority.
        self.ranks: dict[bytes, int] = {b: i for i, b in enumerate(self.token_bytes)}
        self._encoder = encoder

    @classmethod
    def from_files(
        cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
    ) -> GPT2Tokenizer:
        """Load OpenAI's encoder.json and vocab.bpe, checking they belong together."""
        try:
            encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
            merges_text = Path(vocab_bpe).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise TokenizerError(
                f"GPT-2 tokenizer file not found: {e.filename}; put encoder.json and vocab.bpe "
                f"(OpenAI GPT-2) in <data dir>/gpt2/"
            ) from None
        except json.JSONDecodeError as e:
            raise TokenizerError(
                f"{encoder_json}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg})"
            ) from None
        tok = cls(encoder)
        lines = [ln for ln in merges_text.split("\n")[1:] if ln]  # line 0: "#version: 0.2"
        # Each merge "a b" made token a+b, which must have id 256 + its line index.
        for k, line in enumerate(lines):
            parts = line.split(" ")
            if len(parts) != 2 or encoder.get(parts[0] + parts[1]) != 256 + k:
                raise TokenizerError(
                    f"{vocab_bpe}: merge {k + 1} ({line!r}) does not match {encoder_json}; "
                    f"use the encoder.json and vocab.bpe of the same GPT-2 release"
                )
        return tok

    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, **options: Any) -> GPT2Tokenizer:
        raise TokenizerError("GPT-2's tokenizer is fixed: load it with from_files(), not train()")

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes) + len(self.special_tokens)

    def _merge_chunk(self, chunk: bytes) -> list[int]:
        ranks = self.ranks
        whole = ranks.get(chunk)
        if whole is not None:
            return [whole]  # tiktoken's shortcut: a chunk that is a token is emitted as is
        if len(chunk) > LONG_CHUNK:
            return self._merge_long_chunk(chunk)
        parts = [chunk[i : i + 1] for i in range(len(chunk))]
        big = 1 << 62
        # pair_rank[i] = rank of parts[i] + parts[i+1] (big if not a token)
        pair_rank = [ranks.get(parts[i] + parts[i + 1], big) for i in range(len(parts) - 1)]
        while pair_rank:
            r = min(pair_rank)
            if r == big:
                break
            i = pair_rank.index(r)  # leftmost on a tie, as tiktoken
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
            del pair_rank[i]
            # Only the two pairs that touch the new part change.
            if i < len(pair_rank):
                pair_rank[i] = ranks.get(parts[i] + parts[i + 1], big)
            if i > 0:
                pair_rank[i - 1] = ranks.get(parts[i - 1] + parts[i], big)
        return [ranks[p] for p in parts]

    def _merge_long_chunk(self, chunk: bytes) -> list[int]:
        """The same merge order in O(n log n): parts form a linked list of start offsets and a
        heap holds (rank, start) of adjacent pairs, with stale entries skipped on pop. The
        smallest (rank, start) is the lowest rank, leftmost on a tie, as the scan above."""
        ranks, n = self.ranks, len(chunk)
        nxt = list(range(1, n + 1))  # nxt[i]: start of the part after the part at i
        prv = list(range(-1, n - 1))
        alive = [True] * n

        def pair_rank(i: int) -> int | None:
            j = nxt[i]
            return None if j >= n else ranks.get(chunk[i : nxt[j]])

        heap = [(r, i) for i in range(n - 1) if (r := pair_rank(i)) is not None]
        heapq.heapify(heap)
        while heap:
            r, i = heapq.heappop(heap)
            if not alive[i] or pair_rank(i) != r:
                continue  # stale: this part or its right neighbour changed since the push
            j = nxt[i]  # merge the part at j into the part at i
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            for k in (i, prv[i]):
                if k >= 0 and (rk := pair_rank(k)) is not None:
                    heapq.heappush(heap, (rk, k))
        out, i = [], 0
        while i < n:
            out.append(ranks[chunk[i : nxt[i]]])
            i = nxt[i]
        return out

    def _config(self) -> dict[str, Any]:
        return {"encoder": dict(self._encoder), "special_tokens": dict(self.special_tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPT2Tokenizer:
        return cls(d["encoder"], d.get("special_tokens"))
