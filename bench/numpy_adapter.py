"""numpy_gpt behind the bench's adapter interface (imports NumPy only, never torch).

    a = NumpyAdapter(backend, size, seed=0)
    logits, loss = a.check()               # the B1 forward on the exact benchmark inputs
    step = a.step("train")                 # a callable doing one timed step
    a.sync()                               # waits for the GPU (cupy-f32); nothing on the CPU

Backends numpy-f32/numpy-f64 run on the CPU; cupy-f32 runs the same numpy_gpt code on a GPU
(GPT(..., device="cuda"), numpy_gpt/nn/device.py). There, ShardedStep runs the batch whole, the
device peak is CuPy's memory pool growth, and generation moves one row of logits per token
to the host, where sampling runs.

Workloads (one call of the returned callable), all through numpy_gpt.nn.parallel.ShardedStep, the
path `train` and `eval` use: the batch is split over `threads` shards run in threads with
single-threaded BLAS, their gradients summed (with threads=1, one plain model.forward/backward):
    forward   eval-mode loss of the batch (numpy_gpt always builds its backward cache; it has
              no inference mode)
    fwdbwd    forward + backward (all parameter gradients)
    train     forward, backward, clipping at norm 1.0, AdamW.step: one full training step.
              The optimizer is created on the first call, inside the measured window, so
              its moment buffers count in peak memory as torch's lazily created state does.
    generate  numpy_gpt.generation.generate.generate, greedy, with the KV
              cache: `generation_shape()`
              new tokens after a prompt of the first T/4 benchmark tokens, one sequence
    generate-nocache   the same with use_kv_cache=False (a full forward per new token)
    generate-b4, generate-b16   numpy_gpt.generation.batch_generate.generate_batch,
              greedy, with the KV
              cache: 4 or 16 prompts (`generation_prompts`) decoded together, as many new
              tokens each as `generate`; tokens/s counts every row's tokens

The weights are numpy_gpt's own seeded init (GPT(config, dtype, seed)); torch backends load
the same arrays, so every backend computes the same model as the float64 reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from numpy_gpt.nn.device import synchronize, to_numpy
from numpy_gpt.nn.model import GPT
from numpy_gpt.nn.optim import AdamW, clip_coef, grad_norm
from numpy_gpt.nn.parallel import ShardedStep

from .backends import Backend
from .flops import GEN_BATCH
from .sizes import Size, make_inputs

FAULT_PARAM = "transformer.ln_f.weight"  # --plant-fault scales it by 1.5: logits change ~50 %
LR, MAX_NORM = 6e-4, 1.0


def generation_prompt(idx: np.ndarray, size: Size) -> tuple[list[int], int]:
    """(prompt, new tokens) for the generation workloads: the first T/4 tokens of the first
    benchmark sequence, then T - T/4 new tokens, so the context just fills T (no cropping)."""
    T = size.seq_len
    P = max(1, T // 4)
    return [int(t) for t in idx[0, :P]], T - P


def generation_prompts(idx: np.ndarray, size: Size, n: int) -> tuple[list[list[int]], int]:
    """(n prompts, new tokens) for the batched generation workloads: row b is the first T/4
    tokens of benchmark sequence b (cycled when n > B, each repeat shifted by one token, so no
    two rows are the same), each followed by the same number of new tokens as `generate`."""
    prompt, new = generation_prompt(idx, size)
    P, B = len(prompt), idx.shape[0]
    rows = [np.roll(idx[b % B], b // B)[:P] for b in range(n)]
    return [[int(t) for t in r] for r in rows], new


def plant_fault(params: dict[str, np.ndarray]) -> None:
    """A deliberately wrong model (for tests of the B1 check): ln_f gains x 1.5, in place."""
    params[FAULT_PARAM] *= 1.5


class NumpyAdapter:
    def __init__(self, backend: Backend, size: Size, seed: int = 0, fault: bool = False,
                 threads: int | None = None):
        if backend.framework not in ("numpy", "cupy"):
            raise ValueError(f"NumpyAdapter cannot run backend {backend.name}")
        self.backend, self.size = backend, size
        self.model = GPT(size.config, dtype=backend.dtype, seed=seed, device=backend.device)
        self._pool = self.model.xp.get_default_memory_pool() if backend.device == "cuda" else None
        self._pool_base = 0
        if fault:
            plant_fault(self.model.params)
        self.idx, self.targets = make_inputs(size, seed)
        self.sharded = ShardedStep(self.model, threads)

    def check(self) -> tuple[np.ndarray, float]:
        logits, loss, _ = self.model.forward(self.idx, self.targets)
        return to_numpy(logits), float(loss)

    def step(self, workload: str) -> Callable[[], None]:
        model, idx, targets, sharded = self.model, self.idx, self.targets, self.sharded
        if workload == "forward":
            def forward() -> None:
                sharded.loss(idx, targets)
            return forward
        if workload == "fwdbwd":
            def fwdbwd() -> None:
                sharded.forward_backward(idx, targets)
            return fwdbwd
        if workload == "train":
            opt: list[AdamW] = []

            def train() -> None:
                if not opt:
                    opt.append(AdamW(model.params, lr=LR, weight_decay=0.1))
                _, grads = sharded.forward_backward(idx, targets)  # caches freed inside
                coef = clip_coef(grad_norm(grads), MAX_NORM)  # as the training loop clips
                opt[0].step(grads, lr=LR, grad_scale=coef)
            return train
        if workload in ("generate", "generate-nocache"):
            from numpy_gpt.generation.generate import generate

            prompt, n = self.prompt_and_new_tokens()
            kv = workload == "generate"

            def gen() -> None:
                for _ in generate(model, prompt, max_new_tokens=n, greedy=True,
                                  use_kv_cache=kv):
                    pass
            return gen
        if workload in GEN_BATCH:
            from numpy_gpt.generation.batch_generate import generate_batch

            prompts, n = generation_prompts(self.idx, self.size, GEN_BATCH[workload])

            def gen_batch() -> None:
                generate_batch(model, prompts, max_new_tokens=n, greedy=True)
            return gen_batch
        raise ValueError(f"numpy backend has no workload {workload!r}")

    def prompt_and_new_tokens(self) -> tuple[list[int], int]:
        return generation_prompt(self.idx, self.size)

    def generation_shape(self, workload: str = "generate") -> dict[str, int]:
        prompt, n = self.prompt_and_new_tokens()
        return {"gen_batch": GEN_BATCH.get(workload, 1), "prompt_len": len(prompt),
                "new_tokens": n}

    def sync(self) -> None:
        synchronize(self.model.xp)

    def release(self) -> None:
        """Nothing outlives a numpy step: its gradients and caches are dropped at its end."""

    def device_mem_start(self) -> None:
        if self._pool is not None:  # give cached blocks back: the pool then grows to the peak
            self.sync()
            self._pool.free_all_blocks()
            self._pool_base = self._pool.used_bytes()

    def device_peak_mb(self) -> float | None:
        """CuPy memory pool growth over device_mem_start(), MiB (None on the CPU). The pool
        keeps every block it allocated until told otherwise, so its size is the high-water
        mark of what the workload held at once (plus block rounding)."""
        if self._pool is None:
            return None
        return (self._pool.total_bytes() - self._pool_base) / 2**20

    def params_mb(self) -> float:
        return sum(p.nbytes for p in self.model.params.values()) / 2**20
