"""torch_gpt behind the bench's adapter interface: CPU eager/compiled, CUDA fp32/TF32/bf16.

Workloads mirror numpy_adapter.py, in idiomatic PyTorch:
    forward   model(idx, targets) under torch.no_grad() (no autograd graph kept)
    fwdbwd    zero_grad(set_to_none=True), model(idx, targets), loss.backward()
    train     the same, then clip_grad_norm_(1.0) and AdamW.step() (torch_gpt.optim's
              configure_optimizer: PyTorch's default implementation, fused on CUDA)
    generate, generate-nocache   torch_gpt.generate.generate, greedy, with and without its KV
              cache, under the backend's autocast; the same prompt and length as numpy's
    generate-b4, generate-b16   torch_gpt.batch_generate.generate_batch: numpy_adapter's
              generation_prompts, 4 or 16 prompts decoded together

Precision: the parameters are float32 (or float64); "tf32" turns TF32 matmuls on for the whole
worker process (a fresh process per measurement, so no flag leaks); "bfloat16" wraps the
forward in torch.autocast. The compiled backends wrap the module in torch.compile (the
optimizer and clipping stay eager); the CUDA one also forces SDPA's flash-attention kernel.

The weights are numpy_gpt's seeded init in float32, loaded by name with from_params, so the
torch model is the float64 reference's model rounded to float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

import torch_gpt
from numpy_gpt.nn.model_parts import init_params
from torch_gpt.optim import configure_optimizer
from torch_gpt.precision import autocast

from .backends import Backend
from .flops import GEN_BATCH
from .numpy_adapter import LR, MAX_NORM, generation_prompt, generation_prompts, plant_fault
from .sizes import Size, make_inputs


def set_precision_flags(backend: Backend) -> None:
    """Process-wide TF32 flags for this backend's worker (off unless the backend is tf32)."""
    on = backend.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _attention_context(backend: Backend) -> contextlib.AbstractContextManager:
    if not backend.flash:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


class TorchAdapter:
    def __init__(self, backend: Backend, size: Size, seed: int = 0, fault: bool = False,
                 threads: int | None = None):
        if backend.framework != "torch":
            raise ValueError(f"TorchAdapter cannot run backend {backend.name}")
        if threads:
            torch.set_num_threads(threads)
        set_precision_flags(backend)
        self.backend, self.size = backend, size
        self.device = torch.device(backend.device)
        params = init_params(size.config, np.dtype(backend.dtype), np.random.default_rng(seed))
        if fault:
            plant_fault(params)
        self.model = torch_gpt.GPT.from_params(size.config, params, attn="sdpa",
                                               device=self.device, dtype=backend.dtype)
        del params
        self.model.eval()  # dropout is 0 anyway; eval() keeps both twins deterministic
        self.run = torch.compile(self.model) if backend.compile else self.model
        idx, targets = make_inputs(size, seed)
        self.idx_np = idx
        self.idx = torch.from_numpy(idx).to(self.device)
        self.targets = torch.from_numpy(targets).to(self.device)
        self._mem_base = 0

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.backend.autocast), _attention_context(self.backend):
            return self.run(self.idx, self.targets)

    def check(self) -> tuple[np.ndarray, float]:
        with torch.no_grad():
            logits, loss = self._forward()
        return logits.detach().float().cpu().numpy(), float(loss)

    def step(self, workload: str) -> Callable[[], None]:
        model = self.model
        if workload == "forward":
            def forward() -> None:
                with torch.no_grad():
                    self._forward()
            return forward
        if workload == "fwdbwd":
            def fwdbwd() -> None:
                model.zero_grad(set_to_none=True)
                _, loss = self._forward()
                loss.backward()
            return fwdbwd
        if workload == "train":
            opt: list[torch.optim.Optimizer] = []

            def train() -> None:
                if not opt:
                    fused = True if self.device.type == "cuda" else None
                    opt.append(configure_optimizer(model, lr=LR, weight_decay=0.1,
                                                   fused=fused))
                opt[0].zero_grad(set_to_none=True)
                _, loss = self._forward()
                loss.backward()
                # clip_grad_norm_ itself, not torch_gpt.optim.clip_grad_norm: that returns a
                # Python float, i.e. a device sync inside every CUDA step
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
                opt[0].step()
            return train
        if workload in ("generate", "generate-nocache"):
            from torch_gpt.generate import generate

            prompt, n = generation_prompt(self.idx_np, self.size)
            kv = workload == "generate"

            def gen() -> None:
                for _ in generate(model, prompt, max_new_tokens=n, greedy=True,
                                  use_kv_cache=kv, autocast_dtype=self.backend.autocast):
                    pass
            return gen
        if workload in GEN_BATCH:
            from torch_gpt.batch_generate import generate_batch

            prompts, n = generation_prompts(self.idx_np, self.size, GEN_BATCH[workload])

            def gen_batch() -> None:
                generate_batch(model, prompts, max_new_tokens=n, greedy=True,
                               autocast_dtype=self.backend.autocast)
            return gen_batch
        raise ValueError(f"torch backend has no workload {workload!r}")

    def generation_shape(self, workload: str = "generate") -> dict[str, int]:
        prompt, n = generation_prompt(self.idx_np, self.size)
        return {"gen_batch": GEN_BATCH.get(workload, 1), "prompt_len": len(prompt),
                "new_tokens": n}

    def release(self) -> None:
        """Drop the .grad tensors a fwdbwd/train workload leaves on the parameters."""
        self.model.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def device_mem_start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._mem_base = torch.cuda.memory_allocated()

    def device_peak_mb(self) -> float | None:
        """CUDA allocator peak growth over device_mem_start(), MiB (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        return (torch.cuda.max_memory_allocated() - self._mem_base) / 2**20

    def params_mb(self) -> float:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) / 2**20
