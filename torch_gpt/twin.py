"""torch_gpt as a twin of the shared pipeline (numpy_gpt.twin.Twin): what train, finetune,
sample, chat and eval need from the PyTorch model, handed to numpy_gpt's command line by
`python -m torch_gpt` (torch_gpt/cli.py). numpy_gpt never imports this package."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.lora import LoRAConfig
from numpy_gpt.training.train import BackendFactory
from numpy_gpt.twin import Twin

from .batch_generate import generate_batch
from .blas import torch_blas_lines
from .finetune import export_merged, lora_torch_backend
from .generate import generate
from .lora import apply_lora, load_lora_params, merge_lora
from .model import GPT
from .precision import AUTOCAST_DTYPES, autocast, autocast_slowdown, resolve_device
from .train import torch_backend


class TorchTwin(Twin):
    """torch_gpt: float32/float64 parameters or bf16/fp16 autocast, on cpu, cuda or mps."""

    name, package, command, title = "torch", "torch_gpt", "torch-gpt", "PyTorch"
    commands = frozenset({"prepare", "train", "sample", "eval", "chat", "finetune", "export"})
    train_backend = staticmethod(torch_backend)

    def add_train_args(self, parser: argparse.ArgumentParser, dtypes: tuple[str, ...]) -> None:
        parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"),
                            default=None, help="parameter dtype, or autocast for the half types")
        parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None,
                            help="auto picks cuda, then mps, then cpu")
        parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                            help="torch.compile the model")
        parser.add_argument("--dropout-masks", choices=("own", "numpy"), default=None,
                            help="where dropout masks come from: own = torch's generator "
                                 "(fast, SDPA draws them); numpy = numpy_gpt's generator, so a "
                                 "run with dropout is the NumPy twin's run (attention written "
                                 "out, slower). Default: own")

    def add_inference_args(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                            help="auto picks cuda, then mps, then cpu (default: auto)")
        parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"),
                            default=None, help="parameter dtype, or float32 weights under "
                                               "autocast for the half types (default: stored)")

    def lora_backend(self, lora: LoRAConfig, resume_dir: Path, template: str | None
                     ) -> BackendFactory:
        return lora_torch_backend(lora, resume_dir, template)

    def export_merged(self, best: Path, out: Path) -> Path:
        return export_merged(best, out)

    def is_cpu(self, device: str | None) -> bool:
        return resolve_device(device or "auto").type == "cpu"

    def autocast_slowdown(self, config: GPTConfig, dtype: str) -> float:
        return autocast_slowdown(config, dtype, batch_size=1)

    def blas_lines(self, command: str, threads: int | None = None) -> list[str]:
        return torch_blas_lines(command=command, threads=threads)

    def load_generator(self, ckpt, device, dtype):
        half = dtype in AUTOCAST_DTYPES
        model = GPT.load(ckpt, device=resolve_device(device or "auto"),
                         dtype="float32" if half else dtype).eval()
        kwargs = {"autocast_dtype": dtype if half else None}
        return model, generate, generate_batch, kwargs

    def attach_lora(self, model: GPT, lora: LoRAConfig, tensors: dict[str, np.ndarray]) -> None:
        apply_lora(model, lora)
        load_lora_params(model, tensors)
        merge_lora(model).eval()  # folded in once: generate runs the plain model

    def loss_fn(self, ckpt, device, dtype):
        device = resolve_device(device or "auto")
        half = dtype if dtype in AUTOCAST_DTYPES else None
        model = GPT.load(ckpt, device=device,
                         dtype="float64" if dtype == "float64" else "float32").eval()

        @torch.no_grad()
        def loss(x: np.ndarray, y: np.ndarray) -> float:
            with autocast(device, half):
                _, value = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
            return float(value)

        return loss, model.config.block_size


TORCH = TorchTwin()

__all__ = ["TORCH", "TorchTwin"]
