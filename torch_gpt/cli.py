"""`python -m torch_gpt COMMAND ...` and the `torch-gpt` command: numpy_gpt's command line
(numpy_gpt/cli/main.py) with this twin handed in, which adds --device, --dtype and --compile
where they apply and leaves out the NumPy-only subcommands (gradcheck, exercise, plot)."""

from __future__ import annotations

import sys

from numpy_gpt.cli.main import main as shared_main

TORCH_MISSING = ("error: the torch twin needs PyTorch, which is not installed: "
                 "pip install '.[torch]' (torch==2.13.0), or run the NumPy twin: numpy-gpt")


def main(argv: list[str] | None = None) -> int:
    try:
        from .twin import TORCH
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print(TORCH_MISSING, file=sys.stderr)
        return 1
    return shared_main(argv, twin=TORCH)
