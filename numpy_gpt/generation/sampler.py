"""A checkpoint loaded for sampling: its model in one twin, its tokenizer, the twin's generate.

    sampler = Sampler.load(NUMPY, "out/shakespeare-char-cpu-numpy/best")   # numpy_gpt.twin
    for piece in sampler.text("ROMEO:", SamplingConfig(max_new_tokens=100), rng):
        print(piece, end="")

Used by the sample and train commands and by the chat session (generation/chat.py);
`sample_text` is the one-call form (nanoGPT sample.py's defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn.checkpoint import CheckpointError, checkpoint_tokenizer
from ..tokenizers import Tokenizer
from .sampling import (
    SamplingConfig,
    default_prompt,
    encode_prompt,
    generate_text,
    resolve_config,
    special_stop_ids,
    stream_text,
)

if TYPE_CHECKING:  # a twin is handed in; numpy_gpt.twin sits above generation/
    from ..twin import Twin

# nanoGPT sample.py's defaults
DEFAULTS: dict[str, Any] = {"max_new_tokens": 500, "temperature": 0.8, "top_k": 200}
DEFAULT_SEED = 1337


@dataclasses.dataclass
class Sampler:
    """A loaded model + its tokenizer + the twin's generate function."""

    model: Any
    tokenizer: Tokenizer
    generate: Any  # numpy_gpt.generation.generate.generate or torch_gpt.generate.generate
    generate_kwargs: dict[str, Any]
    vocab_limit: int | None  # tokenizer.vocab_size when the model's vocabulary is padded
    generate_batch: Any = None  # numpy_gpt/torch_gpt batch_generate.generate_batch, or None

    @classmethod
    def load(cls, twin: Twin, ckpt: str | Path, *, device: str | None = None,
             dtype: str | None = None) -> Sampler:
        """`ckpt` loaded in `twin` (numpy_gpt.twin.NUMPY, torch_gpt.twin.TORCH, ...), on
        `device` in `dtype` where the twin has a choice."""
        tokenizer = checkpoint_tokenizer(ckpt)
        model, generate, generate_batch, kwargs = twin.load_generator(ckpt, device, dtype)
        V, n = model.config.vocab_size, tokenizer.vocab_size
        if n > V:
            raise CheckpointError(f"{ckpt}: the tokenizer has {n} tokens but the model's "
                                  f"vocab_size is {V}; they do not belong together")
        return cls(model, tokenizer, generate, kwargs, n if n < V else None, generate_batch)

    def text(self, prompt: str, config: SamplingConfig,
             rng: np.random.Generator | None = None, prompt_shown: bool = True
             ) -> Iterator[str]:
        """Stream the text generated after `prompt` (stop strings trimmed; prompt_shown: see
        sampling.generate_text)."""
        config = dataclasses.replace(config, vocab_limit=self.vocab_limit)
        return generate_text(self.generate, self.model, self.tokenizer, prompt, config, rng,
                             prompt_shown, **self.generate_kwargs)


    def texts(self, prompt: str, config: SamplingConfig,
              rngs: list[np.random.Generator], prompt_shown: bool = True) -> list[list[str]]:
        """len(rngs) samples after `prompt`, decoded together: sample i is what text() gives
        with rngs[i]. Each as its list of text pieces (stop strings trimmed)."""
        if self.generate_batch is None:  # no batched twin given: one after the other
            return [list(self.text(prompt, config, rng, prompt_shown)) for rng in rngs]
        ids = encode_prompt(self.tokenizer, prompt)
        stop_ids = tuple(dict.fromkeys(config.stop_ids + special_stop_ids(
            self.tokenizer, config.stop_strings)))
        config = dataclasses.replace(config, vocab_limit=self.vocab_limit, stop_ids=stop_ids)
        rows = self.generate_batch(self.model, [ids] * len(rngs), config, rngs=rngs,
                                   **self.generate_kwargs)
        context = ids if prompt_shown else []
        return [list(stream_text(row, self.tokenizer, config.stop_strings, context=context))
                for row in rows]


def sample_text(
    twin: Twin,
    ckpt: str | Path,
    prompt: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    device: str | None = None,
    dtype: str | None = None,
    **settings: Any,
) -> Iterator[str]:
    """Load `ckpt` in `twin` and stream one sample's text (without the
    prompt). `settings` are SamplingConfig fields; the rest default to the CLI's defaults."""
    config = resolve_config(SamplingConfig(**DEFAULTS, seed=seed), settings)
    sampler = Sampler.load(twin, ckpt, device=device, dtype=dtype)
    text = default_prompt(sampler.tokenizer) if prompt is None else prompt
    return sampler.text(text, config, prompt_shown=False)
