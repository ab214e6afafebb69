"""chat and the Streamlit chat page with a Llama-shaped checkpoint (issue 24: every command
works with --arch llama): the terminal chatbot in both twins, the same greedy replies, the page.

The checkpoint is tests/tiny_chat.py's dialogue tokenizer on a 1-layer Llama (RMSNorm, RoPE,
SwiGLU, 2 query / 1 key-value heads, untied head), trained a few steps so that replies are
text, not one repeated token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import twin_named

from numpy_gpt import GPT, GPTConfig
from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.generation.chat import ChatSession
from numpy_gpt.generation.sampling import SamplingConfig
from numpy_gpt.nn.config import arch_fields
from numpy_gpt.nn.optim import AdamW

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llama_chat(tiny_chat: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = TokenDataset(tiny_chat[0])
    tok = ds.tokenizer()
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2,
                       n_embd=16, **arch_fields("llama", 2))
    assert config.kv_heads == 1 and config.norm == "rmsnorm" and config.position == "rope"
    model = GPT(config, seed=0)
    opt = AdamW(model.params, lr=1e-2)
    ids = ds.tokens("train")
    for step in range(30):  # a few steps: replies become text
        start = (step * 97) % (len(ids) - 65)
        window = ids[start:start + 65][None].astype("int64")
        _, _, cache = model.forward(window[:, :-1], window[:, 1:])
        opt.step(model.backward(cache))
    out = tmp_path_factory.mktemp("llama-chat") / "ckpt"
    model.save(out, tokenizer=tok)
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_terminal_chat_with_a_llama_checkpoint(llama_chat: Path, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    module = "numpy_gpt" if backend == "numpy" else "torch_gpt"
    p = subprocess.run([sys.executable, "-m", module, "chat", "--ckpt", str(llama_chat),
                        "--seed", "0", "--max-new-tokens", "12"],
                       input="hi i am ada\nsay bob\n/quit\n", cwd=ROOT, capture_output=True,
                       text=True, timeout=120, check=False,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("bot> ") == 2 and "Traceback" not in p.stderr


def test_both_twins_give_the_same_greedy_llama_replies(llama_chat: Path) -> None:
    pytest.importorskip("torch")
    replies = []
    for backend in ("numpy", "torch"):
        session = ChatSession.load(twin_named(backend), llama_chat, config=SamplingConfig(
            greedy=True, max_new_tokens=12))
        replies.append(["".join(session.send(m)[1]) for m in ("hi i am ada", "say bob")])
    assert replies[0] == replies[1] and any(r.strip() for r in replies[0])


def test_chat_page_with_a_llama_checkpoint(llama_chat: Path) -> None:
    pytest.importorskip("streamlit", reason="the chat page needs streamlit")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "chat_app.py"), default_timeout=60).run()
    at.sidebar.text_input(key="ckpt").input(str(llama_chat)).run()
    assert not at.exception and not at.error
    at.chat_input[0].set_value("hi i am ada").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
