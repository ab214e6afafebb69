"""A twin: one implementation of the model, as the shared pipeline sees it.

The data pipeline, the training loop, sampling, chat and the command line are written once, in
numpy_gpt, and drive either twin through this interface; numpy_gpt never imports torch_gpt.
The command line takes the twin as a value: `python -m numpy_gpt` runs `main(twin=NUMPY)`,
`python -m torch_gpt` runs `main(twin=torch_gpt.twin.TORCH)`. A third twin would subclass
Twin in its own package and hand itself in the same way, touching no numpy_gpt file.

    from numpy_gpt.twin import NUMPY
    sampler = Sampler.load(NUMPY, "out/shakespeare-char-cpu-numpy/best")
    session = ChatSession.load(torch_gpt.twin.TORCH, ckpt, device="cuda")

What a twin provides, by the command that needs it:
  train, finetune   train_backend (numpy_gpt.training.train's BackendFactory), lora_backend,
                    export_merged, is_cpu, autocast_slowdown, add_train_args, blas_lines
  sample, chat      load_generator, attach_lora, add_inference_args
  eval              loss_fn
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .generation.batch_generate import generate_batch
from .generation.generate import generate
from .nn.blas import blas_lines, numpy_blas
from .nn.config import GPTConfig
from .nn.device import array_module
from .nn.lora import LoRAConfig
from .nn.model import GPT
from .nn.parallel import ShardedStep
from .training.finetune import export_merged_numpy, lora_numpy_backend
from .training.numpy_backend import numpy_backend, numpy_device
from .training.train import BackendFactory

LossFn = Callable[[np.ndarray, np.ndarray], float]


class Twin:
    """The interface; each method says what it must do. `name` appears in messages and in
    default output folders (out/<preset>-<name>); `package` is what `python -m` runs and
    `command` the console script pyproject.toml installs for it."""

    name: str = ""
    package: str = ""
    command: str = ""
    title: str = ""  # in the command line's description
    commands: frozenset[str] | None = None  # the subcommands offered; None: all of them

    # ---- command-line flags
    def add_train_args(self, parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
        """--dtype, --device (and any flag of the twin's own) of train, finetune and eval;
        `dtypes` are the exact types every twin has (float32, float64)."""
        raise NotImplementedError

    def add_inference_args(self, parser: argparse.ArgumentParser) -> None:
        """The flags of sample and chat that choose where and how the model runs."""
        raise NotImplementedError

    # ---- training
    train_backend: BackendFactory

    def lora_backend(self, lora: LoRAConfig, resume_dir: Path, template: str | None
                     ) -> BackendFactory:
        """A BackendFactory training only LoRA adapters (numpy_gpt.training.finetune)."""
        raise NotImplementedError

    def export_merged(self, best: Path, out: Path) -> Path:
        """A LoRA run's best/ (base + adapter/) -> `out`, a plain checkpoint, merged."""
        raise NotImplementedError

    def is_cpu(self, device: str | None) -> bool:
        """Whether `device` (a --device value) is the CPU; an unusable device raises."""
        raise NotImplementedError

    def autocast_slowdown(self, config: GPTConfig, dtype: str) -> float:
        """How many times slower than float32 a training step under `dtype` autocast is on
        this machine (1.0 for a twin without autocast)."""
        return 1.0

    def blas_lines(self, command: str, threads: int | None = None) -> list[str]:
        """The header lines naming the BLAS this twin's CPU matmuls run on, with a note when
        its kernel is forced older than the CPU (numpy_gpt.nn.blas.blas_lines; `command`
        is the one a native re-run would prefix; `threads`: the run's --threads, if given);
        [] for a twin that does not say."""
        return []

    # ---- inference
    def load_generator(self, ckpt: str | Path, device: str | None, dtype: str | None
                       ) -> tuple[Any, Callable, Callable | None, dict[str, Any]]:
        """(model, generate, generate_batch or None, extra keyword arguments of both) for
        a checkpoint folder; generate/generate_batch follow numpy_gpt.generation's."""
        raise NotImplementedError

    def attach_lora(self, model: Any, lora: LoRAConfig, tensors: dict[str, np.ndarray]) -> None:
        """Put a LoRA adapter (numpy_gpt.nn.lora.load_adapter's config and tensors) on a
        model from load_generator, so that generate uses base + adapter."""
        raise NotImplementedError

    def loss_fn(self, ckpt: str | Path, device: str | None, dtype: str | None
                ) -> tuple[LossFn, int]:
        """((x, y) -> mean loss as a float, the model's block_size) for a checkpoint."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.title} twin {self.name!r}>"


class NumpyTwin(Twin):
    """numpy_gpt itself: float32 or float64, on the CPU (both cores) or on CuPy."""

    name, package, command, title = "numpy", "numpy_gpt", "numpy-gpt", "NumPy reference"
    commands = None  # all of them, gradcheck, exercise and plot included
    train_backend = staticmethod(numpy_backend)

    def add_train_args(self, parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
        parser.add_argument("--dtype", choices=dtypes, default=None,
                            help="float32 (fast, default) or float64 (exact)")
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                            help="cuda runs the same NumPy code on CuPy (pip install "
                                 "cupy-cuda12x); auto means cpu for this twin")

    def add_inference_args(self, parser: argparse.ArgumentParser) -> None:
        pass  # the stored dtype, on the CPU

    def lora_backend(self, lora: LoRAConfig, resume_dir: Path, template: str | None
                     ) -> BackendFactory:
        return lora_numpy_backend(lora, resume_dir, template)

    def export_merged(self, best: Path, out: Path) -> Path:
        return export_merged_numpy(best, out)

    def blas_lines(self, command: str, threads: int | None = None) -> list[str]:
        # the BLAS's own pool as loaded: --threads sets the number of batch shards, each of
        # which runs the BLAS single-threaded (nn/parallel.py)
        return blas_lines(numpy_blas(), command=command)

    def is_cpu(self, device: str | None) -> bool:
        name = numpy_device(device)
        array_module(name)  # CuPy asked for but missing: the error says how to install it
        return name == "cpu"

    def load_generator(self, ckpt, device, dtype):
        return GPT.load(ckpt), generate, generate_batch, {}

    def attach_lora(self, model: GPT, lora: LoRAConfig, tensors: dict[str, np.ndarray]) -> None:
        model.set_lora(lora, tensors)  # kept beside the weights; generate merges it per reply

    def loss_fn(self, ckpt, device, dtype):
        model = GPT.load(ckpt, dtype=dtype)
        return ShardedStep(model).loss, model.config.block_size


NUMPY = NumpyTwin()
