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
