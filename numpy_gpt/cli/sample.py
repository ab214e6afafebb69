"""`python -m numpy_gpt sample` / `python -m torch_gpt sample`: text from a checkpoint.

    python -m numpy_gpt sample --ckpt out/shakespeare-char-cpu-numpy/best --prompt "ROMEO:"
    python -m torch_gpt sample --ckpt DIR --num-samples 3 --top-p 0.9 --device cuda

Streams each sample to stdout as it is generated, samples separated by a line of dashes
(nanoGPT's sample.py, with its defaults: 500 new tokens, temperature 0.8, top-k 200, seed
1337). The checkpoint folder must hold the tokenizer the model was trained with
(tokenizer.json); a checkpoint written by either twin samples in either. Settings are
checked before the model loads; every mistake ends as one line `error: ...` (numpy_gpt/cli/main.py).

The importable core is numpy_gpt/generation/sampler.py (Sampler, sample_text); this module
only adds argument parsing and printing (STYLE.md L3).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..generation.sampler import DEFAULT_SEED, DEFAULTS, Sampler
from ..generation.sampling import (
    SamplingConfig,
    SamplingError,
    default_prompt,
    encode_prompt,
    row_rngs,
)
from ..twin import Twin

SEPARATOR = "-" * 15


def add_args(parser: argparse.ArgumentParser, twin: Twin) -> None:
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
    twin.add_inference_args(parser)


def run(args: argparse.Namespace) -> int:
    config = SamplingConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty, greedy=args.greedy,
        stop_strings=tuple(args.stop), use_kv_cache=not args.no_kv_cache,
    )
    if args.num_samples < 1:
        raise SamplingError(f"--num-samples must be >= 1, got {args.num_samples}")
    prompt = read_prompt(args.prompt, args.prompt_file)
    sampler = Sampler.load(args.twin, args.ckpt, device=getattr(args, "device", None),
                           dtype=getattr(args, "dtype", None))
    text = default_prompt(sampler.tokenizer) if prompt is None else prompt
    ids = encode_prompt(sampler.tokenizer, text)  # a bad prompt fails before anything prints
    # the prompt as the model reads it (a word tokenizer lowercases, spaces punctuation and
    # shows <UNK>; the others give it back as typed), so the echo and the text after it are
    # one decode and never disagree
    shown = sampler.tokenizer.decode(ids)
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
            print(shown, end="", flush=True)  # the default start token is not echoed
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


