"""Command line shared by both twins: `python -m numpy_gpt` and `python -m torch_gpt`.

Each subcommand lives in its own module exposing `add_args(parser, backend)` and
`run(args) -> int`; this file only assembles them (STYLE.md L3). A user's mistake (bad flag
value, missing file, corrupt checkpoint) ends with one line `error: ...` on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help); torch_gpt runs the same list minus the NumPy-only ones
SUBCOMMANDS = {
    "prepare": ("numpy_gpt.prepare", "tokenize a dataset into train/val token files"),
    "train": ("numpy_gpt.train_cli", "train a model (default: shakespeare-char-cpu)"),
    "sample": ("numpy_gpt.sample_cli", "generate text from a checkpoint"),
    "eval": ("numpy_gpt.eval_cli", "validation loss and perplexity of a checkpoint"),
    "chat": ("numpy_gpt.chat_cli", "chat with a checkpoint in the terminal"),
    "finetune": ("numpy_gpt.finetune_cli", "fine-tune a checkpoint on instructions or dialogue"),
    "gradcheck": ("numpy_gpt.gradcheck_cli", "check every hand-written gradient numerically"),
    "exercise": ("numpy_gpt.exercise_cli", "write the backward passes yourself, checked"),
    "plot": ("numpy_gpt.plot_cli", "attention maps of a checkpoint; a run's training diagnostics"),
    "export": ("numpy_gpt.export_cli", "write a checkpoint as a Hugging Face GPT-2 folder"),
}
NUMPY_ONLY = {"gradcheck", "exercise", "plot"}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input was wrong": reported in one line, no traceback."""
    from .device import DeviceError

    return (ValueError, FileNotFoundError, PermissionError, KeyError, ImportError, DeviceError)


def machine_faults() -> tuple[type[BaseException], ...]:
    """What the machine did (disk full, a read-only folder, a run lock held by another run):
    one line too. safe_io.WriteError says which file and, where known, what is still safe."""
    from .run_lock import RunLockError

    return (OSError, RunLockError)


def build_parser(backend: str) -> argparse.ArgumentParser:
    prog = "python -m numpy_gpt" if backend == "numpy" else "python -m torch_gpt"
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,  # `--lr` must not quietly mean --lr-decay-iters
        description=f"GPT from scratch ({'NumPy reference' if backend == 'numpy' else 'PyTorch'}"
        " twin): prepare data, train, sample, evaluate, chat.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if backend != "numpy" and name in NUMPY_ONLY:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # not built yet: leave the subcommand out
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_args(p, backend) if _takes_backend(module.add_args) else module.add_args(p)
        p.set_defaults(_run=module.run, backend=backend)
    return parser


def main(argv: list[str] | None = None, backend: str = "numpy") -> int:
    args = build_parser(backend).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except machine_faults() as e:  # a full disk, another run holding the folder, ...
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        cause = getattr(e, "strerror", None) or _one_line(e)  # not "[Errno 28] ..."
        print(f"error: {where}{cause}", file=sys.stderr)
        return 1


def _takes_backend(fn) -> bool:
    return fn.__code__.co_argcount >= 2


def _one_line(e: BaseException) -> str:
    msg = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
    return " ".join(msg.split()) or type(e).__name__
