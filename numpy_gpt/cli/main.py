"""Command line shared by both twins: `python -m numpy_gpt` and `python -m torch_gpt`.

The twin is a value (numpy_gpt.twin.Twin): `main(twin=NUMPY)` here, torch_gpt/cli.py hands in
its own. Each subcommand lives in its own module exposing `add_args(parser, twin)` and
`run(args) -> int`, with `args.twin` (and `args.backend`, the twin's name) set; this file only
assembles them (STYLE.md L3). A user's mistake (bad flag
value, missing file, corrupt checkpoint) ends with one line `error: ...` on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..twin import NUMPY, Twin

# subcommand -> (module, help); a twin offers all of them or those in its `commands`
SUBCOMMANDS = {
    "prepare": ("numpy_gpt.cli.prepare", "tokenize a dataset into train/val token files"),
    "train": ("numpy_gpt.cli.train", "train a model (default: shakespeare-char-cpu)"),
    "sample": ("numpy_gpt.cli.sample", "generate text from a checkpoint"),
    "eval": ("numpy_gpt.cli.eval", "validation loss and perplexity of a checkpoint"),
    "chat": ("numpy_gpt.cli.chat", "chat with a checkpoint in the terminal"),
    "finetune": ("numpy_gpt.cli.finetune", "fine-tune a checkpoint on instructions or dialogue"),
    "gradcheck": ("numpy_gpt.cli.gradcheck", "check every hand-written gradient numerically"),
    "exercise": ("numpy_gpt.cli.exercise", "write the backward passes yourself, checked"),
    "plot": ("numpy_gpt.cli.plot", "attention maps of a checkpoint; a run's training diagnostics"),
    "export": ("numpy_gpt.cli.export", "write a checkpoint as a Hugging Face GPT-2 folder"),
    "compare": ("numpy_gpt.cli.compare", "GPT-2 blocks vs Llama blocks at equal parameters and "
                "training time, several seeds (table + picture)"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input was wrong": reported in one line, no traceback."""
    from ..nn.device import DeviceError

    return (ValueError, FileNotFoundError, PermissionError, KeyError, ImportError, DeviceError)


def machine_faults() -> tuple[type[BaseException], ...]:
    """What the machine did (disk full, a read-only folder, a run lock held by another run):
    one line too. safe_io.WriteError says which file and, where known, what is still safe."""
    from ..files.run_lock import RunLockError

    return (OSError, RunLockError)


def build_parser(twin: Twin = NUMPY) -> argparse.ArgumentParser:
    called = os.path.basename(sys.argv[0]) if sys.argv else ""
    parser = argparse.ArgumentParser(
        prog=twin.command if called == twin.command else f"python -m {twin.package}",
        allow_abbrev=False,  # `--lr` must not quietly mean --lr-decay-iters
        description=f"GPT from scratch ({twin.title} twin): prepare data, train, sample, "
                    "evaluate, chat.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if twin.commands is not None and name not in twin.commands:
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_args(p, twin) if _takes_twin(module.add_args) else module.add_args(p)
        p.set_defaults(_run=module.run, twin=twin, backend=twin.name)
    return parser


def main(argv: list[str] | None = None, twin: Twin = NUMPY) -> int:
    """Run one command of `twin`'s command line; the exit status (0 ok, 1 a user's mistake or
    a machine fault, 128+N a signal)."""
    args = build_parser(twin).parse_args(argv)
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


def _takes_twin(fn) -> bool:
    return fn.__code__.co_argcount >= 2


def _one_line(e: BaseException) -> str:
    msg = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
    return " ".join(msg.split()) or type(e).__name__
