"""`python -m numpy_gpt sample` / `python -m torch_gpt sample`: text from a checkpoint.

    python -m numpy_gpt sample --ckpt out/shakespeare-char-cpu-numpy/best --prompt "ROMEO:"
    python -m torch_gpt sample --ckpt DIR --num-samples 3 --top-p 0.9 --device cuda

Streams each sample to stdout as it is generated, samples separated by a line of dashes
(nanoGPT's sample.py, with its defaults: 500 new tokens, temperature 0.8, top-k 200, seed
1337). The checkpoint folder must hold the tokenizer the model was trained with
(tokenizer.json); a checkpoint written by either twin samples in either. Settings are
checked before the model loads; every mistake ends as one line `error: ...` (numpy_gpt/cli.py).

`sample_text()` is the importable core (train prints a sample with it); this module only adds
argument parsing and printing (STYLE.md L3).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import TOKENIZER_FILE, CheckpointError, read_meta
from .sampling import (
    SamplingConfig,
    SamplingError,
    default_prompt,
    encode_prompt,
    generate_text,
    resolve_config,
    row_rngs,
    special_stop_ids,
    stream_text,
)
from .tokenizers import Tokenizer, load_tokenizer

# nanoGPT sample.py's defaults
DEFAULTS: dict[str, Any] = {"max_new_tokens": 500, "temperature": 0.8, "top_k": 200}
DEFAULT_SEED = 1337
SEPARATOR = "-" * 15


def add_args(parser: argparse.ArgumentParser, backend: str = "numpy") -> None:
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--prompt", metavar="TEXT",
                     help="text to continue (default: a newline, or <|endoftext|> for BPE "
                          "tokenizers); special tokens such as <|endoftext|> are recognised")
    src.add_argument("--prompt-file", metavar="FILE", help="read the prompt from a UTF-8 file")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"],
                        metavar="N", help="tokens to generate per sample (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"],
                        metavar="T", help="> 0; lower is more conservative (default: "
                                          "%(default)s; for deterministic output use --greedy)")
    parser.add_argument("--top-k", type=int, default=DEFAULTS["top_k"], metavar="K",
                        help="sample only from the K most likely tokens (default: %(default)s)")
    parser.add_argument("--top-p", type=float, default=None, metavar="P",
                        help="nucleus sampling: the smallest set of tokens with probability "
                             ">= P, 0 < P <= 1 (default: off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                        help="divide positive / multiply negative logits of tokens already "
                             "seen by R; > 1 discourages repeats (default: 1, off)")
    parser.add_argument("--greedy", action="store_true",
                        help="always take the most likely token (ignores temperature/top-k/p)")
    parser.add_argument("--stop", action="append", default=[], metavar="STR",
                        help="stop when the text contains STR (trimmed from the output), "
                             "e.g. --stop '<|endoftext|>'; repeatable")
    parser.add_argument("--num-samples", type=int, default=1, metavar="N",
                        help="number of samples, decoded together as one batch; sample i "
                             "draws from its own generator (the first is the --num-samples "
                             "1 sample) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                        help="seed of the sampling random numbers (default: %(default)s)")
    parser.add_argument("--no-kv-cache", action="store_true",
                        help="recompute the whole context for every token (slower; same output)")
    add_inference_device_args(parser, backend)


def add_inference_device_args(parser: argparse.ArgumentParser, backend: str) -> None:
    """--device and --dtype of the torch twin's inference commands (sample, chat)."""
    if backend != "numpy":
        parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                            help="auto picks cuda, then mps, then cpu (default: auto)")
        parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"),
                            default=None, help="parameter dtype, or float32 weights under "
                                               "autocast for the half types (default: stored)")


def run(args: argparse.Namespace) -> int:
    config = SamplingConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty, greedy=args.greedy,
        stop_strings=tuple(args.stop), use_kv_cache=not args.no_kv_cache,
    )
    if args.num_samples < 1:
        raise SamplingError(f"--num-samples must be >= 1, got {args.num_samples}")
    prompt = read_prompt(args.prompt, args.prompt_file)
    sampler = Sampler.load(args.backend, args.ckpt, device=getattr(args, "device", None),
                           dtype=getattr(args, "dtype", None))
    text = default_prompt(sampler.tokenizer) if prompt is None else prompt
    encode_prompt(sampler.tokenizer, text)  # a bad prompt fails before anything is printed
    if args.num_samples == 1:  # streamed as it is generated
        pieces = [sampler.text(text, config, np.random.default_rng(args.seed),
                               prompt_shown=prompt is not None)]
    else:  # decoded together (batch_generate.py), each printed when all are done
        pieces = sampler.texts(text, config, row_rngs(args.seed, args.num_samples),
                               prompt_shown=prompt is not None)
    for i, sample in enumerate(pieces):
        if i:
            print(SEPARATOR, flush=True)
        if prompt is not None:
            print(prompt, end="", flush=True)  # the default start token is not echoed
        for piece in sample:
            print(piece, end="", flush=True)
        print(flush=True)
    return 0


def read_prompt(prompt: str | None, prompt_file: str | None) -> str | None:
    if prompt_file is None:
        return prompt
    path = Path(prompt_file)
    if not path.is_file():
        raise SamplingError(f"--prompt-file {path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SamplingError(f"--prompt-file {path} is not UTF-8 text ({e.reason})") from None


def checkpoint_tokenizer(ckpt: str | Path) -> Tokenizer:
    """The tokenizer saved in a checkpoint folder; a clear error when there is none."""
    ckpt = Path(ckpt)
    read_meta(ckpt)  # a missing or corrupt folder says so first
    if not (ckpt / TOKENIZER_FILE).is_file():
        raise CheckpointError(
            f"{ckpt} has no {TOKENIZER_FILE}: sampling needs the tokenizer the model was "
            "trained with; save the checkpoint with it (model.save(dir, tokenizer=tok))"
        )
    return load_tokenizer(ckpt / TOKENIZER_FILE)


@dataclasses.dataclass
class Sampler:
    """A loaded model + its tokenizer + the twin's generate function."""

    model: Any
    tokenizer: Tokenizer
    generate: Any  # numpy_gpt.generate.generate or torch_gpt.generate.generate
    generate_kwargs: dict[str, Any]
    vocab_limit: int | None  # tokenizer.vocab_size when the model's vocabulary is padded
    generate_batch: Any = None  # numpy_gpt/torch_gpt batch_generate.generate_batch, or None

    @classmethod
    def load(cls, backend: str, ckpt: str | Path, *, device: str | None = None,
             dtype: str | None = None) -> Sampler:
        tokenizer = checkpoint_tokenizer(ckpt)
        kwargs: dict[str, Any] = {}
        if backend == "numpy":
            from .batch_generate import generate_batch
            from .generate import generate
            from .model import GPT

            model = GPT.load(ckpt)
        else:  # torch is imported only for the torch twin
            from torch_gpt.batch_generate import generate_batch
            from torch_gpt.generate import generate
            from torch_gpt.model import GPT as TorchGPT
            from torch_gpt.precision import AUTOCAST_DTYPES, resolve_device

            half = dtype in AUTOCAST_DTYPES
            model = TorchGPT.load(ckpt, device=resolve_device(device or "auto"),
                                  dtype="float32" if half else dtype).eval()
            kwargs["autocast_dtype"] = dtype if half else None
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
    backend: str,
    ckpt: str | Path,
    prompt: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    device: str | None = None,
    dtype: str | None = None,
    **settings: Any,
) -> Iterator[str]:
    """Load `ckpt` in one twin ("numpy" | "torch") and stream one sample's text (without the
    prompt). `settings` are SamplingConfig fields; the rest default to the CLI's defaults."""
    config = resolve_config(SamplingConfig(**DEFAULTS, seed=seed), settings)
    sampler = Sampler.load(backend, ckpt, device=device, dtype=dtype)
    text = default_prompt(sampler.tokenizer) if prompt is None else prompt
    return sampler.text(text, config, prompt_shown=False)
