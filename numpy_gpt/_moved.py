"""The module paths of numpy_gpt's first, flat layout, kept importable.

numpy_gpt's modules now live in folders by concern (nn/, data/, training/, generation/, hf/,
cli/, files/). Code written against the flat layout keeps working: `import numpy_gpt.model` and
`from numpy_gpt.train_config import TrainConfig` give the very module objects of their new homes
(numpy_gpt.nn.model, numpy_gpt.training.config), so there is one copy of each module and its
state. New code should import the new paths, which are the ones the README shows.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED = {  # old name under numpy_gpt -> new name under numpy_gpt
    "config": "nn.config", "model": "nn.model", "layers": "nn.layers", "optim": "nn.optim",
    "gradcheck": "nn.gradcheck", "lora": "nn.lora", "checkpoint": "nn.checkpoint",
    "device": "nn.device", "parallel": "nn.parallel", "runtime": "nn.runtime",
    "attention_maps": "nn.attention_maps",
    "data": "data.dataset", "datasets": "data.datasets", "encode": "data.encode",
    "prepare": "data.prepare", "chat_format": "data.chat_format",
    "train": "training.train", "train_config": "training.config", "train_plan": "training.plan",
    "train_diagnostics": "training.diagnostics", "finetune": "training.finetune",
    "progress": "training.progress", "run_guard": "training.run_guard",
    "generate": "generation.generate", "batch_generate": "generation.batch_generate",
    "sampling": "generation.sampling", "chat": "generation.chat",
    "hf_import": "hf.importer", "hf_export": "hf.exporter",
    "safe_io": "files.safe_io", "run_lock": "files.run_lock",
    "train_cli": "cli.train", "sample_cli": "cli.sample", "eval_cli": "cli.eval",
    "chat_cli": "cli.chat", "finetune_cli": "cli.finetune", "gradcheck_cli": "cli.gradcheck",
    "exercise_cli": "cli.exercise", "plot_cli": "cli.plot", "export_cli": "cli.export",
}
PREFIX = "numpy_gpt."


def new_name(fullname: str) -> str | None:
    """The new home of an old module name (numpy_gpt.layers.linear ->
    numpy_gpt.nn.layers.linear), or None for a name that did not move. numpy_gpt.data and
    numpy_gpt.cli are folders now: `from numpy_gpt.data import TokenDataset` works through
    data/__init__.py, and only their submodules' names are not remapped."""
    if not fullname.startswith(PREFIX):
        return None
    rest = fullname[len(PREFIX):]
    if rest in MOVED and rest not in ("data", "cli"):
        return PREFIX + MOVED[rest]
    head, _, tail = rest.partition(".")
    if tail and head in MOVED and head not in ("data", "cli"):
        return f"{PREFIX}{MOVED[head]}.{tail}"
    return None


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old name with the module imported under its new one."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        return importlib.util.spec_from_loader(fullname, self) if new else None

    def __init__(self) -> None:
        self.specs: dict[str, importlib.machinery.ModuleSpec] = {}  # new name -> own spec

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(new_name(spec.name))
        self.specs.setdefault(module.__name__, module.__spec__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # it ran already, under its new name; the import system has just set __spec__ to
        # the old name's, so put the module's own back
        module.__spec__ = self.specs[module.__name__]


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
