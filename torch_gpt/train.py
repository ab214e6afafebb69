"""TorchBackend: torch_gpt behind numpy_gpt.training.train's Backend protocol (one loop, two twins).

What is PyTorch-specific lives here: devices, autocast (bf16/fp16) with a GradScaler for fp16,
torch.compile, and data parallelism. Run under torchrun (RANK/WORLD_SIZE set) it wraps the
model in DistributedDataParallel (NCCL on CUDA, gloo on CPU): every rank draws its own batches
(the batch generator is seeded with the rank), gradients are averaged by DDP (synchronised only
on the last micro-batch, via no_sync), evaluation losses are all-reduced, and only rank 0
writes files.

Randomness: dropout inside F.dropout / scaled_dot_product_attention draws from PyTorch's
generator, which those ops cannot be handed; the backend seeds it once and saves its state
(CPU and CUDA) in each checkpoint, so a resume continues bit-identically on the same device.
With `dropout_masks="numpy"` (--dropout-masks numpy) the masks are numpy_gpt's instead:
drawn by numpy_gpt.nn.model_parts.make_dropout_masks from a NumPy generator seeded (seed, 2),
as the NumPy twin draws them, and handed to the model (attention written out, as SDPA cannot
take a mask); that generator's state is what a checkpoint keeps, in the NumPy twin's format.
A run with dropout is then the NumPy twin's run, to rounding.

Optimizer state is saved under numpy_gpt's names (exp_avg.<param>, exp_avg_sq.<param>, step),
so a training checkpoint resumes in either twin.

Ref: nanoGPT train.py (DDP, autocast, GradScaler); torch.distributed docs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from numpy_gpt.data.dataset import rng_from_state, rng_state
from numpy_gpt.nn import checkpoint as ckpt
from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model_parts import make_dropout_masks
from numpy_gpt.training.config import TrainConfig

from .model import GPT
from .optim import clip_grad_norm, configure_optimizer, set_lr
from .precision import autocast, grad_scaler, maybe_compile, resolve_device

HALF_TYPES = ("bfloat16", "float16")


class TorchBackend:
    name = "torch"

    def __init__(self, model: GPT, tcfg: TrainConfig, device: torch.device):
        self.tcfg, self.device, self.config = tcfg, device, model.config
        self.half = tcfg.dtype if tcfg.dtype in HALF_TYPES else None
        self.rank, self.world = _init_distributed(device)
        self.is_main = self.rank == 0
        self.model = model  # the plain module: names, saving, optimizer
        self.opt = configure_optimizer(model, lr=tcfg.learning_rate,
                                       betas=(tcfg.beta1, tcfg.beta2),
                                       weight_decay=tcfg.weight_decay)
        self.scaler = grad_scaler(device, self.half)
        net = maybe_compile(model, tcfg.compile)
        if self.world > 1:
            net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.net = net  # what forward runs: compiled and/or DDP-wrapped
        self.micro = 0  # micro-batches since the last step, for DDP's no_sync
        self.mask_rng = None  # numpy_gpt's dropout-mask stream, with --dropout-masks numpy
        if tcfg.dropout_masks == "numpy":
            # rank 0 draws exactly the NumPy twin's stream; other ranks their own
            stream = [tcfg.seed, 2] if self.rank == 0 else [tcfg.seed, 2, self.rank]
            self.mask_rng = np.random.default_rng(stream)
        else:
            torch.manual_seed(tcfg.seed * 1000 + 2 + self.rank)  # dropout; state is checkpointed
        model.train()

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(self.device),
                torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(self.device))

    def dropout_masks(self, B: int, T: int) -> dict[str, torch.Tensor] | None:
        """numpy_gpt's keep-masks for one batch, on the device (None: torch draws its own)."""
        if self.mask_rng is None:
            return None
        masks = make_dropout_masks(self.config, B, T, self.mask_rng,
                                   getattr(self.model, "lora", None))
        return {k: torch.from_numpy(m).to(self.device) for k, m in masks.items()} or None

    def forward_backward(self, x: np.ndarray, y: np.ndarray, scale: float) -> float:
        xt, yt = self._tensors(x, y)
        masks = self.dropout_masks(*x.shape)
        self.micro += 1
        last_micro = self.micro == self.tcfg.gradient_accumulation_steps
        sync = self.net.no_sync() if self.world > 1 and not last_micro else _null()
        with sync:
            with autocast(self.device, self.half):
                _, loss = self.net(xt, yt, label_smoothing=self.tcfg.label_smoothing,
                                   dropout_masks=masks)
            self.scaler.scale(loss * scale).backward()
        return float(loss.detach())

    def step(self, lr: float, grad_clip: float) -> float:
        set_lr(self.opt, lr)
        norm = float("nan")
        if grad_clip > 0:
            self.scaler.unscale_(self.opt)
            norm = clip_grad_norm(self.model, grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.micro = 0
        return norm

    @torch.no_grad()
    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        xt, yt = self._tensors(x, y)
        self.model.eval()
        try:
            with autocast(self.device, self.half):
                _, loss = self.model(xt, yt)
        finally:
            self.model.train()
        return float(loss)

    # ------------------------------------------------------------------ state

    def save(self, path: Path, tokenizer: Any, trainer_state: dict | None) -> None:
        self.model.save(path, tokenizer=tokenizer, trainer_state=trainer_state,
                        optimizer_state=self.optimizer_state() if trainer_state else None)

    def trained_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters AdamW updates, by canonical name (all, or only LoRA's when the base
        is frozen)."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """AdamW moments under numpy_gpt.nn.optim.AdamW's names."""
        state, step = {}, 0
        for name, p in self.trained_parameters().items():
            s = self.opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                state[f"{key}.{name}"] = (_to_numpy(s[key]) if s else
                                          np.zeros(tuple(p.shape), dtype=_np_dtype(p)))
            step = int(s["step"]) if s else step
        state["step"] = np.array([step], dtype=np.int64)
        return state

    def load_optimizer(self, path: Path) -> None:
        state = ckpt.load_optimizer_state(path)
        step = int(state["step"][0])
        if step == 0:
            return
        for name, p in self.trained_parameters().items():
            self.opt.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.from_numpy(state[f"exp_avg.{name}"]).to(p),
                "exp_avg_sq": torch.from_numpy(state[f"exp_avg_sq.{name}"]).to(p),
            }

    def rng_state(self) -> Any:
        if self.mask_rng is not None:  # the NumPy twin's format: either twin resumes it
            return rng_state(self.mask_rng)
        state = {"cpu": torch.get_rng_state().tolist()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device).tolist()
        return state

    def set_rng_state(self, state: Any) -> None:
        if self.mask_rng is not None:
            if isinstance(state, dict) and "bit_generator" in state:
                self.mask_rng = rng_from_state(state)
            return  # a torch generator's state means nothing to numpy_gpt's masks
        if not isinstance(state, dict) or "cpu" not in state:
            return  # a checkpoint from the NumPy twin: its generator means nothing here
        torch.set_rng_state(torch.tensor(state["cpu"], dtype=torch.uint8))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), self.device)

    def close(self) -> None:
        """Leave data parallelism in order: wait for every rank, then tear the group down
        (a rank that exits while another still holds the connection can abort in gloo)."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def all_reduce_mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world


def torch_model(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> GPT:
    """The model a run trains, on its device: seeded from scratch or a checkpoint's weights."""
    device = _local_device(tcfg.device)
    if tcfg.threads is not None:
        torch.set_num_threads(tcfg.threads)
    # half types train float32 master weights under autocast
    param_dtype = "float64" if tcfg.dtype == "float64" else "float32"
    # SDPA draws its own attention dropout; numpy_gpt's masks need the written-out attention
    attn = "manual" if tcfg.dropout_masks == "numpy" and config.dropout > 0 else "sdpa"
    if init is None:
        return GPT(config, attn=attn, seed=tcfg.seed, device=device, dtype=param_dtype)
    _, params, _ = ckpt.load_checkpoint(init)
    return GPT.from_params(config, params, attn=attn, device=device, dtype=param_dtype)


def torch_backend(tcfg: TrainConfig, config: GPTConfig, init: Path | None) -> TorchBackend:
    """Build the torch backend from scratch (seeded) or from a checkpoint's weights."""
    model = torch_model(tcfg, config, init)
    return TorchBackend(model, tcfg, next(model.parameters()).device)


def _local_device(name: str) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return (t.float() if t.dtype not in (torch.float32, torch.float64) else t).numpy().copy()


def _np_dtype(p: torch.Tensor) -> np.dtype:
    return np.dtype(np.float64 if p.dtype == torch.float64 else np.float32)


class _null:
    def __enter__(self) -> None: ...
    def __exit__(self, *exc: object) -> None: ...
