"""Shared pytest setup: the repository root on sys.path, so tests run without installing."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (restored after): at these tiny sizes extra threads
    only add overhead, several times over on 2 busy cores. Files opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    from parity.runner import torch_threads  # torch only where a test asks for it

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset folder, checkpoint) of tests/tiny_chat.py, built once; tests only read them."""
    from tiny_chat import tiny_checkpoint, tiny_dataset

    root = tmp_path_factory.mktemp("tiny-chat")
    folder = tiny_dataset(root)
    return folder, tiny_checkpoint(root, folder)


@pytest.fixture(scope="session")
def tiny_lora(tiny_chat: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Path]:
    """tiny_chat's base checkpoint with LoRA adapters (tests/tiny_chat.py), built once:
    base, alpaca (an adapter recording the alpaca format), merged (base + alpaca, recording
    it), legacy (an adapter from before adapters recorded base and format), other (another
    base, seed 1). Tests only read them."""
    from tiny_chat import tiny_adapter, tiny_checkpoint, tiny_merged

    root = tmp_path_factory.mktemp("tiny-lora")
    base = tiny_chat[1]
    alpaca = tiny_adapter(root, base, "alpaca")
    return {"base": base, "alpaca": alpaca, "merged": tiny_merged(root, base, alpaca),
            "legacy": tiny_adapter(root, base, "legacy", legacy=True, seed=2),
            "other": tiny_checkpoint(root, tiny_chat[0], name="other", seed=1)}


CITIZENS = ("First Citizen: Before we proceed any further, hear me speak.\n"
            "All: Speak, speak.\nFirst Citizen: You are all resolved rather to die than to "
            "famish?\n") * 40


@pytest.fixture(scope="session")
def citizens_chars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CITIZENS prepared with the char tokenizer (read-only: the training and fault tests
    train on it; a test that damages prepared data makes its own)."""
    from numpy_gpt.data.prepare import prepare

    root = tmp_path_factory.mktemp("citizens")
    (root / "input.txt").write_text(CITIZENS)
    return prepare(root / "input.txt", root / "prepared", fmt="text", tokenizer="char",
                   name="tiny")


def twin_named(name: str):
    """numpy_gpt.twin.NUMPY or torch_gpt.twin.TORCH by name: tests parametrize over the names,
    the library and the command line take the twin itself."""
    if name == "numpy":
        from numpy_gpt.twin import NUMPY

        return NUMPY
    from torch_gpt.twin import TORCH

    return TORCH
