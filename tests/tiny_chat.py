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
from numpy_gpt.data import TokenDataset
from numpy_gpt.prepare import prepare

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
