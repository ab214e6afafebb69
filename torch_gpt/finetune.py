"""LoRA fine-tuning for torch_gpt: TorchBackend training only the adapters.

The twin of numpy_gpt/training/finetune.py's LoRANumpyBackend (read its docstring for the run
and the output folders; the loop is numpy_gpt.training.train.train). apply_lora freezes the
base, so configure_optimizer, which takes only Parameters with requires_grad, builds AdamW over
the adapters, and autograd computes no base gradients. What changes here is I/O: a checkpoint
holds the base weights (the canonical names, loadable by either twin), the adapter in
`adapter/` and the adapters' AdamW moments under numpy_gpt's names.

Ref: Hu et al. 2021; HF peft (frozen base, adapter-only checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from numpy_gpt.nn import checkpoint as ckpt
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.lora import LoRAConfig
from numpy_gpt.training.config import TrainConfig
from numpy_gpt.training.finetune import ADAPTER_DIR, tokenizer_of
from numpy_gpt.training.train import BackendFactory

from .lora import apply_lora, load_adapter, merge_lora, save_adapter
from .model import GPT
from .train import TorchBackend, torch_model


class LoRATorchBackend(TorchBackend):
    """TorchBackend over a model with LoRA adapters (torch_gpt.lora.apply_lora)."""

    def __init__(self, model: GPT, tcfg: TrainConfig, device: torch.device,
                 template: str | None = None):
        if getattr(model, "lora", None) is None:
            raise ValueError("LoRATorchBackend needs a model with LoRA adapters (apply_lora)")
        super().__init__(model, tcfg, device)
        self.template = template
        self.base_fingerprint = ckpt.params_fingerprint(self.base_params())  # frozen

    def base_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.numpy_params().items() if ".lora_" not in k}

    def save(self, path: Path, tokenizer: Any, trainer_state: dict | None) -> None:
        ckpt.save_checkpoint(path, self.config, self.base_params(), tokenizer=tokenizer,
                             trainer_state=trainer_state,
                             optimizer_state=self.optimizer_state() if trainer_state else None,
                             write_extra=self.write_adapter)

    def write_adapter(self, folder: Path) -> None:
        """adapter/ inside the checkpoint's temporary folder (numpy_gpt.training.finetune's
        rule)."""
        save_adapter(self.model, folder / ADAPTER_DIR, base=self.tcfg.init_from,
                     base_fingerprint=self.base_fingerprint, template=self.template)


def lora_torch_backend(lcfg: LoRAConfig, resume_dir: Path, template: str | None = None
                       ) -> BackendFactory:
    """A factory for numpy_gpt.training.train.train (see
    numpy_gpt.training.finetune.lora_numpy_backend)."""

    def make(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> LoRATorchBackend:
        if init is None:
            raise ValueError("LoRA fine-tuning needs a checkpoint to start from (--ckpt)")
        model = torch_model(tcfg, config, init)  # the base weights, on the device
        if Path(init) == resume_dir and (Path(init) / ADAPTER_DIR).is_dir():
            load_adapter(model, Path(init) / ADAPTER_DIR)
        else:
            apply_lora(model, lcfg, seed=tcfg.seed)
        return LoRATorchBackend(model, tcfg, next(model.parameters()).device, template)

    return make


def export_merged(best: Path, out: Path) -> Path:
    """best/ (base + adapter/) -> `out`, a plain checkpoint with the adapter merged in."""
    model = GPT.load(best)
    load_adapter(model, best / ADAPTER_DIR)
    merge_lora(model).save(out, tokenizer=tokenizer_of(best))
    return out
