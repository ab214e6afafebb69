"""The command line takes the twin as a value (numpy_gpt/twin.py): a third twin, defined here
outside numpy_gpt, gets the shared commands with its own name, flags and model loading."""

from __future__ import annotations

import argparse

import pytest

from numpy_gpt.cli.main import build_parser, main
from numpy_gpt.twin import NUMPY, NumpyTwin


class ThirdTwin(NumpyTwin):
    """numpy_gpt's math under another name, with a flag of its own and a record of loads."""

    name, package, command, title = "third", "third_gpt", "third-gpt", "Third"
    commands = frozenset({"sample", "eval"})

    def __init__(self) -> None:
        self.loaded: list[tuple] = []

    def add_inference_args(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--shards", type=int, default=1)

    def load_generator(self, ckpt, device, dtype):
        self.loaded.append((str(ckpt), device, dtype))
        return super().load_generator(ckpt, device, dtype)


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_each_twin_offers_its_commands_under_its_own_name() -> None:
    third = build_parser(ThirdTwin())
    assert third.prog == "python -m third_gpt" and _commands(third) == {"sample", "eval"}
    assert "gradcheck" in _commands(build_parser(NUMPY))  # None: every command


def test_a_third_twin_samples_through_the_shared_command_line(tiny_chat, capsys) -> None:
    twin = ThirdTwin()
    args = ["sample", "--ckpt", str(tiny_chat[1]), "--max-new-tokens", "3", "--shards", "2"]
    assert main(args, twin=twin) == 0
    assert twin.loaded == [(str(tiny_chat[1]), None, None)]  # its loader ran, nobody else's
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error: not numpy's flag
        main(["sample", "--ckpt", str(tiny_chat[1]), "--shards", "2"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --shards 2" in capsys.readouterr().err
