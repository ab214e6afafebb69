"""`python -m numpy_gpt export` / `python -m torch_gpt export`: a checkpoint for transformers.

    python -m numpy_gpt export --ckpt out/shakespeare-char-cpu-numpy/best --format hf --out hf/
    # then: transformers.AutoModelForCausalLM.from_pretrained("hf/")  # GPT-2 or Llama

Both twins run this same code (the export touches no framework: numpy_gpt.hf.exporter). Prints
what it will do once every check has passed, then one line per thing worth knowing (how
bias=False or an untied head was written, what happened to the tokenizer). Every refusal is
one line `error: ...`, alone.
"""

from __future__ import annotations

import argparse

from ..hf.exporter import FORMATS, HFExportError, export_hf


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--format", default="hf", metavar="FORMAT",
                        help="'hf': a Hugging Face folder (GPT2LMHeadModel, or "
                             "LlamaForCausalLM for a Llama-shaped model) that transformers "
                             "and, for byte-level BPE tokenizers, GPT2TokenizerFast load "
                             "(default: %(default)s; the only format)")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="folder to create (written beside it, then renamed into place)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it exists (only an earlier export or an empty "
                             "folder)")


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise HFExportError(f"--format {args.format!r} is not supported; the only format is "
                            "'hf' (Hugging Face GPT-2)")

    def plan() -> None:  # printed once every check has passed: a refusal is one line alone
        print(f"export {args.ckpt} -> {args.out} (Hugging Face GPT-2 or Llama: config.json, "
              "model.safetensors, tokenizer files)", flush=True)

    for note in export_hf(args.ckpt, args.out, overwrite=args.overwrite, on_checked=plan):
        print(note)
    print(f"wrote {args.out}; load it with transformers.AutoModelForCausalLM.from_pretrained "
          "(the architecture line above names the class)")
    return 0
