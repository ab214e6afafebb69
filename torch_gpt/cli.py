"""`python -m torch_gpt COMMAND ...` and the `torch-gpt` command: numpy_gpt's command line
(numpy_gpt/cli/main.py) with this twin handed in, which adds --device, --dtype and --compile
where they apply and leaves out the NumPy-only subcommands (gradcheck, exercise, plot)."""

from __future__ import annotations

from numpy_gpt.cli.main import main as shared_main

from .twin import TORCH


def main(argv: list[str] | None = None) -> int:
    return shared_main(argv, twin=TORCH)
