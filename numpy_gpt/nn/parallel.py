"""Data parallelism across CPU cores inside one process: shard the batch, sum the gradients.

NumPy runs elementwise work (GELU, softmax, LayerNorm, ...) on one core, and OpenBLAS's own
threads do poorly on the small matrices of a small GPT. Instead, split each batch into one
shard per core, run model.forward/backward on the shards in a thread pool with single-threaded
BLAS, and add the shards' gradients. NumPy releases the GIL inside ufunc loops and BLAS calls,
so the shards really run at the same time. The model code is untouched: this is gradient
accumulation, done concurrently.

Exactness: the loss is a mean over counted targets, so shard s is weighted by
w_s = n_valid_s / n_valid (its share of the counted targets), giving the same loss and
gradients as one pass over the whole batch, up to float summation order. Shards are summed in
a fixed order, and dropout masks are drawn for the whole batch before splitting, so a seed
still fixes every bit and a resumed run stays identical.

When it pays: every extra shard costs one more full set of gradients and a pass to add it,
about n_params of memory traffic, while it saves half of the per-row elementwise work, about
B*T*n_layer*(22 C + 4 NH T) values (GELU, softmax, LayerNorm, residuals over a step). With
the default rule the batch is sharded only when that work is at least twice n_params: yes for
the small CPU models (baby: 12M vs 0.8M; 6L/384d: 180M vs 11M), no for GPT-2 124M at B=4,
T=64 (61M vs 124M), where multithreaded BLAS on the whole batch wins. `always=True` shards
regardless (tests).

Ref: the same decomposition as DDP's gradient all-reduce (PyTorch DistributedDataParallel).
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from .layers.loss import IGNORE_INDEX
from .model import GPT
from .model_parts import make_dropout_masks


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class _OneBlasThread:
    """`with single_threaded_blas():` BLAS runs on one thread inside the block.

    The BLAS thread count is process-wide state, so this is one object per process, safe to
    nest and to enter from several threads at once: the first entry sets the limit, the last
    exit restores what was there (entries and exits counted under a lock), so overlapping
    blocks can never leave BLAS stuck at one thread. The loaded BLAS libraries are looked up
    once (threadpoolctl.ThreadpoolController): a fresh threadpool_limits() lists them again on
    every entry, ~0.9 ms, which is 2-3 % of a small model's training step.

    Subtle: threadpoolctl (>= 3.5) lets one Python thread at a time control OpenBLAS's
    thread pool; a limit set from another thread while that one is alive is a no-op. So
    blocks that overlap across threads may run with the original thread count (never a
    wrong result, only a slower one); blocks in one thread, or one thread after another,
    behave as described.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._controller: Any = None
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_ONE_BLAS_THREAD = _OneBlasThread()


def single_threaded_blas() -> AbstractContextManager:
    """Limit BLAS to one thread while the block runs (threadpoolctl; a no-op without it)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # pragma: no cover - in requirements.txt; without it shards still work
        return nullcontext()
    return _ONE_BLAS_THREAD


class ShardedStep:
    """forward+backward (or forward only) of one batch over `threads` shards of its rows."""

    def __init__(self, model: GPT, threads: int | None = None, *, always: bool = False):
        self.model = model
        self.always = always
        self.threads = max(1, threads or default_threads())  # cores to use; None = all
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def worth_sharding(self, B: int, T: int) -> bool:
        """The cost rule of the module docstring (or True with always=True); never on a GPU."""
        if self.model.device != "cpu":
            return False  # a GPU's kernels use all of it already
        if self.always:
            return True
        cfg = self.model.config
        rows_work = B * T * cfg.n_layer * (22 * cfg.n_embd + 4 * cfg.n_head * T)
        n_params = sum(p.size for p in self.model.params.values())
        return rows_work >= 2 * n_params

    def shards(self, B: int, T: int = 1) -> list[slice]:
        n = min(self.threads, B) if self.worth_sharding(B, T) else 1
        bounds = np.linspace(0, B, n + 1).astype(int)
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def forward_backward(
        self, x: np.ndarray, y: np.ndarray, *, dloss: float = 1.0, label_smoothing: float = 0.0,
        train: bool = False, rng: np.random.Generator | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """(mean loss, gradients of dloss * loss), as model.forward + model.backward would."""
        model = self.model
        masks = None
        if train and (model.config.dropout > 0 or (model.lora and model.lora.dropout > 0)):
            if rng is None:
                raise ValueError("train mode with dropout > 0 needs rng")
            masks = make_dropout_masks(model.config, *x.shape, rng, model.lora)
        weights = shard_weights(y, self.shards(*x.shape))

        def run(part: slice, w: float) -> tuple[float, dict[str, np.ndarray]]:
            shard_masks = None if masks is None else {k: m[part] for k, m in masks.items()}
            _, loss, cache = model.forward(x[part], y[part], label_smoothing=label_smoothing,
                                           train=train, dropout_masks=shard_masks)
            return loss, model.backward(cache, dloss=dloss * w, release=True)

        results = self._map(run, weights)
        grads = results[0][1]
        for _, g in results[1:]:  # fixed order: deterministic sums
            for k, v in g.items():
                grads[k] += v
        return weighted_loss(results, weights), grads

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Eval-mode mean loss of the batch (forward only)."""
        weights = shard_weights(y, self.shards(*x.shape))
        results = self._map(lambda part, w: (self.model.forward(x[part], y[part])[1], None),
                            weights)
        return weighted_loss(results, weights)

    def _map(self, fn, weights: list[tuple[slice, float]]) -> list:
        if self.pool is None or len(weights) == 1:
            return [fn(part, w) for part, w in weights]
        with single_threaded_blas():
            futures = [self.pool.submit(fn, part, w) for part, w in weights]
            return [f.result() for f in futures]


def shard_weights(y: np.ndarray, parts: list[slice]) -> list[tuple[slice, float]]:
    """Each shard's share of the counted (non-ignored) targets; equal shares if none count."""
    counts = np.array([np.count_nonzero(y[p] != IGNORE_INDEX) for p in parts], dtype=np.float64)
    total = counts.sum()
    shares = counts / total if total > 0 else np.full(len(parts), 1.0 / len(parts))
    return [(p, float(w)) for p, w in zip(parts, shares, strict=True) if w > 0 or total == 0]


def weighted_loss(results: list, weights: list[tuple[slice, float]]) -> float:
    return float(sum(w * r[0] for r, (_, w) in zip(results, weights, strict=True)))
