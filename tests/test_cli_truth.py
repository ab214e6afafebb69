"""The command line never does something other than what it says (issue 13).

Each refusal is one `error: ...` line, a non-zero exit, no traceback, and nothing written or
changed; what may change is really applied. Runs are tiny (1 layer, 16 wide, a few steps).
"""

import ast
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numpy_gpt.data import TokenDataset
from numpy_gpt.prepare import prepare
from numpy_gpt.train import numpy_backend, train
from numpy_gpt.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen: Before we proceed any further, hear me speak.\n"
        "All: Speak, speak.\nFirst Citizen: You are all resolved rather to die than to famish?\n"
        ) * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "1", "--sample-tokens", "0", "--no-plot"]


def run_cli(*args: str, cwd: Path, module: str = "numpy_gpt") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def one_line_error(done: subprocess.CompletedProcess, message: str, code: int = 1) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes: "nothing changed" is an equal snapshot."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def char_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("char")
    (root / "input.txt").write_text(TEXT)
    return prepare(root / "input.txt", root / "prepared", fmt="text", tokenizer="char",
                   name="tiny")


def tiny(data: Path, **changes) -> TrainConfig:
    settings = {"dataset": str(data), "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
                "batch_size": 4, "max_iters": 4, "eval_interval": 2, "eval_iters": 1,
                "warmup_iters": 1, "sample_tokens": 0}
    settings.update(changes)
    return TrainConfig(**settings)


# ---- case 3: no abbreviated flags, on any parser ---------------------------------------------
PARSER_CALLS = ("ArgumentParser", "_Parser", "add_parser")


def parser_calls_without_allow_abbrev() -> list[str]:
    """Every parser-building call in the project's sources that lacks allow_abbrev=False."""
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "out") or any(p.startswith(".") for p in rel.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name not in PARSER_CALLS:
                continue
            ok = any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant)
                     and k.value.value is False for k in node.keywords)
            if not ok:
                missing.append(f"{rel}:{node.lineno}")
    return missing


def walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def test_every_parser_refuses_abbreviated_flags():
    assert parser_calls_without_allow_abbrev() == []
    from numpy_gpt.cli import build_parser

    builders = [lambda: build_parser("numpy"), lambda: build_parser("torch")]
    for module in ("parity.cli", "bench.cli"):
        mod = pytest.importorskip(module)
        builders.append(mod.build_parser)
    parsers = [p for b in builders for p in walk(b())]
    assert len(parsers) > 10
    assert [p.prog for p in parsers if p.allow_abbrev] == []


def test_train_lr_is_not_lr_decay_iters(tmp_path):
    done = run_cli("train", "--lr", "1000", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --lr 1000" in done.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()
