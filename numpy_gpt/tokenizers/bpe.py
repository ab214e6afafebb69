"""BPETokenizer: byte-level BPE trained from scratch, minbpe's RegexTokenizer with fast training.

The 256 byte values are the base tokens, so any UTF-8 text round-trips. Training splits the
text into chunks with GPT-2's regex, counts the distinct chunks, and repeatedly merges the most
frequent adjacent pair of ids into a new id (256, 257, ...). Special tokens (default
`<|endoftext|>`) are cut out of the training text and get the ids after the merges;
`vocab_size` counts them, so vocab_size=512 with one special token learns 255 merges.

Training is incremental rather than minbpe's recount-everything-per-merge:
  - each distinct chunk is stored once with its frequency, and pair counts are weighted by it;
  - `where[pair]` is the set of chunks containing the pair, so a merge rewrites only those
    chunks and updates the counts of the pairs it destroyed and created;
  - the best pair comes from a heap with lazy deletion (an entry is used only if its count is
    still current). Ties go to the smallest pair (a, b), so training is deterministic and
    independent of dict order (minbpe takes the first-inserted pair instead).
Known answer (Wikipedia's example): "aaabdaaabac" learns (97, 97) -> 256 ("aa", 4 times),
then (97, 98) -> 257 ("ab" ties with "Za" at 2 and is the smaller pair), then
(256, 257) -> 258; it encodes to [258, 100, 258, 97, 99], as minbpe's test expects.

Encoding merges, inside each chunk, the pair with the lowest merge index until none applies
(minbpe's encode), which reproduces the training segmentation; chunk results are cached.

Deliberately omits: the GPT-4 pattern, training over a streamed corpus, byte shuffling.
Ref: karpathy/minbpe regex.py and base.py (get_stats, merge); Sennrich et al. 2016;
Wikipedia "Byte pair encoding".
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Collection
from typing import Any

import regex

from .base import TokenizerError, check_special_tokens, split_special
from .bytelevel import GPT2_SPLIT_PATTERN, ByteLevelTokenizer, utf8_bytes

ENDOFTEXT = "<|endoftext|>"


class BPETokenizer(ByteLevelTokenizer):
    kind = "bpe"

    def __init__(
        self,
        merges: list[tuple[int, int]],
        special_tokens: Collection[str] = (ENDOFTEXT,),
        pattern: str = GPT2_SPLIT_PATTERN,
    ):
        """`merges[k] = (a, b)` creates id 256 + k; special tokens follow the merges."""
        specials = check_special_tokens(special_tokens)
        self.merges = [(int(a), int(b)) for a, b in merges]
        n_base = 256 + len(self.merges)
        super().__init__({s: n_base + i for i, s in enumerate(specials)}, pattern)
        self.token_bytes = [bytes([i]) for i in range(256)]
        self.ranks: dict[tuple[int, int], int] = {}
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + k and 0 <= b < 256 + k):
                raise TokenizerError(f"BPE merge {k} ({a}, {b}) uses an id not yet defined")
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
            self.ranks[(a, b)] = 256 + k

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        special_tokens: Collection[str] = (ENDOFTEXT,),
        pattern: str = GPT2_SPLIT_PATTERN,
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text` (fewer if the text
        runs out of pairs). `progress` shows a tqdm bar on stderr."""
        specials = check_special_tokens(special_tokens)
        n_merges = vocab_size - 256 - len(specials)
        if n_merges < 0:
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small for a byte-level BPE: it needs 256 byte "
                f"tokens + {len(specials)} special tokens; use --vocab-size >= "
                f"{256 + len(specials)}"
            )
        compiled = regex.compile(pattern)
        chunk_counts: Counter[str] = Counter()
        for piece in split_special(text, specials):
            chunk_counts.update(compiled.findall(piece))
        merges = _learn_merges(
            [list(utf8_bytes(c)) for c in chunk_counts], list(chunk_counts.values()),
            n_merges, progress,
        )
        return cls(merges, specials, pattern)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes) + len(self.special_tokens)

    def _merge_chunk(self, chunk: bytes) -> list[int]:
        ids = list(chunk)
        ranks = self.ranks
        while len(ids) >= 2:
            # The pair merged earliest in training (lowest new id) goes first.
            best = min(itertools.pairwise(ids), key=lambda p: ranks.get(p, 1 << 62))
            new = ranks.get(best)
            if new is None:
                break
            ids = _merge(ids, best, new)
        return ids

    def _config(self) -> dict[str, Any]:
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        return {
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": specials,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        return cls(
            [tuple(m) for m in d["merges"]],
            d.get("special_tokens", (ENDOFTEXT,)),
            d.get("pattern", GPT2_SPLIT_PATTERN),
        )


def _merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `new`."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _learn_merges(
    words: list[list[int]], freqs: list[int], n_merges: int, progress: bool
) -> list[tuple[int, int]]:
    """The BPE merge list for distinct chunks `words` (byte ids) occurring `freqs` times."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in itertools.pairwise(w):
            counts[p] += f
            where[p].add(wi)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_merges, desc="bpe merges", unit="merge", delay=0.5)
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        # Lazy deletion: skip entries whose count changed since they were pushed.
        while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)
        if not heap or heap[0][0] == 0:
            break  # no pair left to merge: the text is too small for this vocab_size
        _, pair = heapq.heappop(heap)
        new = 256 + len(merges)
        merges.append(pair)
        # Net change of every pair count touched by this merge (a chunk's pairs are all
        # removed and its new pairs added; chunks are short, so this is cheaper than working
        # out exactly which neighbours changed).
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for wi in where.pop(pair):
            w = words[wi]
            merged = _merge(w, pair, new)
            if len(merged) == len(w):
                continue  # stale index entry: an earlier merge removed the pair here
            f = freqs[wi]
            for p in itertools.pairwise(w):
                delta[p] -= f
            for p in itertools.pairwise(merged):
                delta[p] += f
                where[p].add(wi)
            words[wi] = merged
        for p, d in delta.items():
            if d == 0:
                continue
            c = counts.get(p, 0) + d
            if c > 0:
                counts[p] = c
                heapq.heappush(heap, (-c, p))
            else:
                counts.pop(p, None)  # includes `pair` itself, now merged everywhere
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges
