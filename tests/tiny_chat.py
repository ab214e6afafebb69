"""Test helpers for chat and fine-tuning: a tiny dialogue dataset and a tiny checkpoint.

    folder = tiny_dataset(tmp_path)            # prepared JSONL conversations, char tokenizer
    ckpt = tiny_checkpoint(tmp_path, folder)    # a 1-layer GPT saved with that tokenizer

Tests take both, built once per session, from conftest.py's `tiny_chat` fixture.
Sizes are chosen so that a fine-tune of a few dozen steps takes about a second on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.prepare import prepare

NAMES = ("ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal")


def conversations(n: int = 96, seed: int = 0) -> list[dict]:
    """Short, learnable exchanges: greetings, sums, echoes; some with two turns."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = (int(v) for v in rng.integers(0, 5, 2))
        name = NAMES[i % len(NAMES)]
        kind = i % 3
        if kind == 0:
            msgs = [("user", f"hi i am {name}"), ("assistant", f"hello {name}!")]
        elif kind == 1:
            msgs = [("user", f"what is {a} plus {b}?"), ("assistant", f"{a + b}.")]
        else:
            msgs = [("user", f"say {name}"), ("assistant", name),
                    ("user", "again"), ("assistant", f"{name} {name}")]
        out.append({"messages": [{"role": r, "content": c} for r, c in msgs]})
    return out


def tiny_dataset(root: Path, n: int = 96) -> Path:
    src = root / "tiny_chat.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in conversations(n)), encoding="utf-8")
    return prepare(src, root / "tiny_chat_data", tokenizer="char", val_fraction=0.2, seed=0)


def tiny_checkpoint(root: Path, folder: Path, name: str = "base", seed: int = 0,
                    block_size: int = 64) -> Path:
    tok = TokenDataset(folder).tokenizer()
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2,
                       n_embd=16)
    GPT(config, seed=seed).save(root / name, tokenizer=tok)
    return root / name


def tiny_adapter(root: Path, base: Path, name: str, *, template: str | None = "alpaca",
                 legacy: bool = False, seed: int = 1) -> Path:
    """A LoRA adapter for `base` with random (nonzero) tensors, recording base and format the
    way finetune does; `legacy`: an adapter_config.json from before those were recorded."""
    from numpy_gpt.nn.checkpoint import checkpoint_fingerprint
    from numpy_gpt.nn.lora import LoRAConfig, init_lora_params, save_adapter

    model = GPT.load(base)
    lcfg = LoRAConfig(rank=2, alpha=4.0, targets=("c_attn", "c_fc"))
    rng = np.random.default_rng(seed)
    tensors = {k: v + rng.standard_normal(v.shape).astype(v.dtype)
               for k, v in init_lora_params(model.config, lcfg, model.dtype, rng).items()}
    save_adapter(root / name, lcfg, tensors, base=str(base),
                 base_fingerprint=checkpoint_fingerprint(base), template=template)
    if legacy:  # what save_adapter wrote before adapters recorded base and format
        config = root / name / "adapter_config.json"
        meta = json.loads(config.read_text())
        config.write_text(json.dumps({k: meta[k] for k in ("format_version", "lora",
                                                           "base_checkpoint")}))
    return root / name


def tiny_merged(root: Path, base: Path, adapter: Path, name: str = "merged") -> Path:
    """`base` with `adapter` merged in, recording it as finetune's merged/ folder does."""
    from numpy_gpt.nn.checkpoint import TEMPLATE_KEY
    from numpy_gpt.nn.lora import MERGED_KEY, load_adapter
    from numpy_gpt.training.finetune import merged_adapters, record_meta, tokenizer_of

    model = GPT.load(base)
    lcfg, tensors, meta = load_adapter(adapter)
    model.set_lora(lcfg, tensors)
    model.merge_lora()
    model.save(root / name, tokenizer=tokenizer_of(base))
    record_meta(root / name, {MERGED_KEY: merged_adapters(str(base), adapter),
                              TEMPLATE_KEY: meta[TEMPLATE_KEY]})
    return root / name
