"""The framework-free half of generation, shared by both twins' generate.py.

    config = SamplingConfig(max_new_tokens=200, temperature=0.8, top_k=200, seed=1337)
    ids = encode_prompt(tokenizer, "ROMEO:")
    for text in stream_text(generate(model, ids, config), tokenizer, config.stop_strings):
        print(text, end="", flush=True)

What lives here: the settings (a validated frozen dataclass), prompt encoding and cropping, stop
strings, and incremental text decoding for streaming. What does not: anything that touches
logits. Temperature, top-k, top-p, the repetition penalty, softmax and the draw are written
twice, with NumPy in numpy_gpt/generation/generate.py and with torch in torch_gpt/generate.py
(STYLE.md L2: a twin that reused the other's math would prove nothing).

The sampling contract both twins implement (so that one seed gives one sample in either):

    1. l = logits of the next token, as float64 (float32 on MPS, which has no float64)
    2. repetition penalty r (CTRL, Keskar et al. 2019; HF RepetitionPenaltyLogitsProcessor):
       for every token already in the prompt or the generation, l = l / r if l > 0 else l * r
    3. ids >= vocab_limit (padding rows of a rounded-up vocabulary) get l = -inf
    4. greedy (greedy=True or top_k=1): the token is argmax l (the first maximum); stop here
    5. l = l / temperature
    6. top-k: l = -inf below the k-th largest value (ties with it are kept)
    7. p = softmax(l)
    8. top-p (nucleus, Holtzman et al. 2019): sort p descending, stably (ties keep vocabulary
       order); keep a token when the mass sorted before it is < top_p, zero the rest
    9. the one random number per token: u ~ U[0, 1) from a np.random.Generator; the token is
       the first index i, in vocabulary order, with cumsum(p)[i] > u * sum(p)

Deliberately omits: beam search, min-p, typical sampling, frequency/presence penalties.
Several prompts at once: each twin's batch_generate.py, with one Generator per row (row_rngs).
Ref: nanoGPT sample.py and model.py generate(); HF transformers generation/logits_process.py.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.config import unknown_fields


class SamplingError(ValueError):
    """A bad generation setting or prompt; the one-line message names it and the fix."""


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 100  # tokens to generate at most (>= 0); a stop ends sooner
    temperature: float = 1.0  # > 0; < 1 sharpens, > 1 flattens the distribution
    top_k: int | None = None  # keep the k most likely tokens (>= 1); None: all
    top_p: float | None = None  # nucleus: smallest set with mass >= top_p, in (0, 1]
    repetition_penalty: float = 1.0  # > 0; > 1 discourages tokens already seen, 1 is off
    greedy: bool = False  # always the most likely token (also implied by top_k=1)
    stop_ids: tuple[int, ...] = ()  # generation ends before any of these tokens
    stop_strings: tuple[str, ...] = ()  # text-level stops (stream_text), trimmed from output
    seed: int | None = None  # seeds the Generator when generate() is given none
    use_kv_cache: bool = True  # False: recompute the whole context for every token
    vocab_limit: int | None = None  # ids >= this are never sampled (vocabulary padding)

    def __post_init__(self) -> None:
        # lists from a caller or argparse become tuples, so the config stays hashable
        object.__setattr__(self, "stop_ids", tuple(self.stop_ids))
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        _check_int("max_new_tokens", self.max_new_tokens, 0)
        if not isinstance(self.greedy, bool):
            raise SamplingError(f"greedy must be True or False, got {self.greedy!r}")
        if not self.greedy and not (_is_number(self.temperature) and self.temperature > 0
                                    and math.isfinite(self.temperature)):
            raise SamplingError(
                f"temperature must be a finite number > 0, got {self.temperature!r}; for "
                "deterministic decoding (always the most likely token) use --greedy"
            )
        if self.top_k is not None:
            _check_int("top_k", self.top_k, 1)
        if self.top_p is not None and not (_is_number(self.top_p) and 0 < self.top_p <= 1):
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p!r}")
        r = self.repetition_penalty
        if not (_is_number(r) and r > 0 and math.isfinite(r)):
            raise SamplingError(
                f"repetition_penalty must be a finite number > 0, got {r!r} "
                "(1 is off, > 1 penalises repeats, e.g. 1.2)"
            )
        for i in self.stop_ids:
            _check_int("stop_ids", i, 0)
        for s in self.stop_strings:
            if not isinstance(s, str) or not s:
                raise SamplingError(f"stop strings must be non-empty strings, got {s!r}")
        if self.seed is not None:
            _check_int("seed", self.seed, 0)
        if not isinstance(self.use_kv_cache, bool):
            raise SamplingError(f"use_kv_cache must be True or False, got {self.use_kv_cache!r}")
        if self.vocab_limit is not None:
            _check_int("vocab_limit", self.vocab_limit, 1)

    @property
    def is_greedy(self) -> bool:
        """Deterministic argmax decoding: greedy=True, or top_k=1 (the same thing)."""
        return self.greedy or self.top_k == 1


def resolve_config(config: SamplingConfig | None, settings: dict[str, Any]) -> SamplingConfig:
    """`config` (default SamplingConfig()) with keyword `settings` replacing its fields."""
    config = SamplingConfig() if config is None else config
    if not isinstance(config, SamplingConfig):
        raise SamplingError(f"config must be a SamplingConfig, got {type(config).__name__}")
    unknown, valid = unknown_fields(SamplingConfig, settings)
    if unknown:
        raise SamplingError(f"unknown generation setting(s) {unknown}; valid: {valid}")
    return dataclasses.replace(config, **settings) if settings else config


def check_generation_inputs(
    prompt_ids: Sequence[int] | np.ndarray, config: SamplingConfig, vocab_size: int
) -> list[int]:
    """The prompt as a list of ints, after checking it and the stop ids against the model's
    vocabulary. An empty prompt is an error: the first token needs something to follow."""
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise SamplingError(
            f"the prompt must be a non-empty 1-D sequence of token ids, got shape {ids.shape}"
            " (start from the tokenizer's end-of-text token or a newline)"
        )
    if not np.issubdtype(ids.dtype, np.integer):
        raise SamplingError(f"prompt token ids must be integers, got dtype {ids.dtype}")
    for what, values in (("prompt", ids.tolist()), ("stop_ids", list(config.stop_ids))):
        bad = [i for i in values if not 0 <= i < vocab_size]
        if bad:
            raise SamplingError(f"{what} contains token id {bad[0]} outside the model's "
                                f"vocabulary [0, {vocab_size})")
    return ids.tolist()


def row_rngs(seed: int | None, n: int) -> list[np.random.Generator]:
    """One Generator per row of a batched generation (or per sample of `sample
    --num-samples`): row 0's is default_rng(seed), what a single seeded generate() uses, and
    row i's default_rng([seed, i]); fresh OS entropy for each when seed is None."""
    if seed is None:
        return [np.random.default_rng() for _ in range(n)]
    return [np.random.default_rng(seed if i == 0 else [seed, i]) for i in range(n)]


def advance_contexts(contexts: list[list[int]], tokens: Sequence[int | None],
                     block_size: int) -> tuple[list[int], list[int]]:
    """Append tokens[b] to contexts[b] (None: row b is finished, unchanged), cropping a context
    that passes block_size from the left. Returns (rows that grew by one position, rows that
    were cropped: every position shifted, so their KV cache must be rebuilt)."""
    grow = [b for b, t in enumerate(tokens) if t is not None]
    crop = []
    for b in grow:
        contexts[b].append(int(tokens[b]))
        if len(contexts[b]) > block_size:
            contexts[b] = contexts[b][1:]
            crop.append(b)
    return [b for b in grow if b not in crop], crop


def decode_rows(decoder: Any, seen: Any, next_token: Callable[..., int],
                config: SamplingConfig, rngs: Sequence[np.random.Generator]
                ) -> list[list[int]]:
    """The token loop of batched generation, shared by both twins' batch_generate.py (it is
    bookkeeping: the logits math is each twin's `next_token` and `decoder`).

    decoder.logits[b] are row b's next-token logits; decoder.append(tokens) advances the rows
    whose token is not None. seen (B, V) bool marks each row's prompt and tokens (the
    repetition penalty). Per row, exactly generate()'s rules: one uniform from rngs[b] per
    token when sampling, a stop id ends the row unreturned, at most max_new_tokens.
    """
    B = len(rngs)
    out: list[list[int]] = [[] for _ in range(B)]
    stop = set(config.stop_ids)
    done = [False] * B
    for n in range(config.max_new_tokens):
        tokens: list[int | None] = [None] * B
        for b in range(B):
            if done[b]:
                continue
            u = None if config.is_greedy else rngs[b].random()  # as generate(): one per token
            token = next_token(decoder.logits[b], seen[b], config, u)
            if token in stop:
                done[b] = True
                continue
            out[b].append(token)
            seen[b, token] = True
            tokens[b] = token
        if n + 1 == config.max_new_tokens or all(done):
            break  # the last tokens need no forward after them
        decoder.append(tokens)
    return out


def crop_context(ids: Sequence[int], block_size: int) -> list[int]:
    """The last block_size tokens: what the model can see (nanoGPT's idx_cond)."""
    return list(ids[-block_size:])


# ---------------------------------------------------------------------- prompts


def default_prompt(tokenizer: Any) -> str:
    """What to start from without a prompt: the end-of-text token for byte-level BPE
    (documents are separated by it in training), else a newline, else the end token."""
    eot = tokenizer.eot_token
    if tokenizer.kind in ("bpe", "gpt2") and eot is not None:
        return eot
    if _encodes(tokenizer, "\n"):
        return "\n"
    if eot is not None:
        return eot
    raise SamplingError("this tokenizer has neither a newline nor an end-of-text token; "
                        "give a --prompt")


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a user prompt; special-token strings (e.g. <|endoftext|>) become their
    ids. Text the tokenizer cannot encode (a character outside a char vocabulary) raises one
    SamplingError naming it."""
    try:
        ids = tokenizer.encode(text, allowed_special="all")
    except ValueError as e:
        raise SamplingError(f"cannot encode the prompt: {e}") from None
    if not ids:
        raise SamplingError(f"the prompt {text!r} encodes to no tokens; give a longer prompt")
    return ids


def special_stop_ids(tokenizer: Any, stop_strings: Iterable[str]) -> tuple[int, ...]:
    """Ids of the stop strings that are special tokens: stopping on the id is exact and does
    not wait for the text (stream_text still catches them as strings too)."""
    return tuple(tokenizer.special_tokens[s] for s in stop_strings
                 if s in tokenizer.special_tokens)


def _encodes(tokenizer: Any, text: str) -> bool:
    try:
        return bool(tokenizer.encode(text))
    except ValueError:
        return False


# ---------------------------------------------------------------------- streaming text


class TextStream:
    """Incremental decoding of generated ids into text that is safe to print.

    Byte-level BPE tokens can split a multi-byte UTF-8 character; its first bytes alone
    decode to U+FFFD. With `decode_bytes` (byte-level tokenizers) an incremental UTF-8
    decoder holds incomplete bytes back until the character completes. Other tokenizers
    (char, word) are decoded whole and the new suffix returned; decode(prefix) is a prefix
    of decode(ids) for them, so nothing printed is ever taken back. `context` (the prompt's
    ids, already shown) is decoded with them but not returned, so the first new text joins
    the prompt as decode(prompt + generated) would: a word tokenizer's space between the
    prompt's last word and the first generated one included.
    """

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self._utf8 = (codecs.getincrementaldecoder("utf-8")(errors="replace")
                      if hasattr(tokenizer, "decode_bytes") else None)
        # the generic path: decode(ids) from the context on, and how much of it was shown
        self.ids: list[int] = [] if self._utf8 is not None else [int(i) for i in context]
        self._emitted = len(tokenizer.decode(self.ids)) if self.ids else 0

    def push(self, token: int) -> str:
        """Append one id; return the text that became final."""
        self.ids.append(int(token))
        if self._utf8 is not None:
            return self._utf8.decode(self.tokenizer.decode_bytes([int(token)]))
        text = self.tokenizer.decode(self.ids)
        new = text[self._emitted:]
        self._emitted = len(text)
        return new

    def flush(self) -> str:
        """The rest (incomplete bytes at the very end become U+FFFD, as decode() does)."""
        return self._utf8.decode(b"", final=True) if self._utf8 is not None else ""


class StopStrings:
    """Finds stop strings in streamed text, holding back what might begin one.

    feed(chunk) -> (text safe to emit, stopped). Text is held back while it ends with a
    proper prefix of a stop string, so a stop string split across chunks ("<EN" + "D>") is
    still caught and never partly printed. On a stop, the text before the earliest stop
    string is emitted and the stop string itself (and anything after) is dropped.
    """

    def __init__(self, stop_strings: Iterable[str]):
        self.stops = tuple(stop_strings)
        self._held = ""

    def feed(self, chunk: str) -> tuple[str, bool]:
        buf = self._held + chunk
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = max((n for s in self.stops for n in range(1, len(s))
                    if buf.endswith(s[:n])), default=0)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def stream_text(
    tokens: Iterable[int], tokenizer: Any, stop_strings: Iterable[str] = (),
    context: Sequence[int] = (),
) -> Iterator[str]:
    """Text chunks of a token stream as they become final, ending at the first stop string
    (which is trimmed). Only generated text is searched, never the prompt. On a stop, the
    token stream is closed, so generation ends there too. `context`: the prompt's ids when
    the text is printed right after the prompt (see TextStream)."""
    decoder, stops = TextStream(tokenizer, context), StopStrings(stop_strings)
    try:
        for token in tokens:
            text, stopped = stops.feed(decoder.push(token))
            if text:
                yield text
            if stopped:
                return
        text, stopped = stops.feed(decoder.flush())
        rest = text if stopped else text + stops.flush()
        if rest:
            yield rest
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()


def generate_text(
    generate: Callable[..., Iterator[int]],
    model: Any,
    tokenizer: Any,
    prompt: str,
    config: SamplingConfig,
    rng: np.random.Generator | None = None,
    prompt_shown: bool = True,
    **generate_kwargs: Any,
) -> Iterator[str]:
    """Stream the text generated after `prompt`, with `generate` one twin's generate()
    (`generate_kwargs` go to it). Stop strings that are special tokens also stop on their id.
    prompt_shown: the text follows the printed prompt, so it starts as decode(prompt + new)
    continues it (a word tokenizer's space first); False when the prompt is not printed."""
    ids = encode_prompt(tokenizer, prompt)
    stop_ids = tuple(dict.fromkeys(config.stop_ids + special_stop_ids(tokenizer,
                                                                      config.stop_strings)))
    tokens = generate(model, ids, dataclasses.replace(config, stop_ids=stop_ids), rng=rng,
                      **generate_kwargs)
    return stream_text(tokens, tokenizer, config.stop_strings,
                       context=ids if prompt_shown else ())


# ---------------------------------------------------------------------- helpers


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SamplingError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise SamplingError(f"{name} must be >= {minimum}, got {value}")
