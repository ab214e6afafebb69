"""Optimization: AdamW, global-norm gradient clipping, the learning-rate schedules.

The arithmetic follows PyTorch's torch.optim.AdamW (single-tensor path) step for step, so the
two twins stay within float rounding of each other over many steps:

    p     <- p - lr * wd * p                         decoupled weight decay (2-D+ params only)
    m     <- b1 m + (1 - b1) g
    v     <- b2 v + (1 - b2) g^2
    p     <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Which parameters decay follows nanoGPT's configure_optimizers: every tensor with ndim >= 2
(matmul weights and embeddings) decays; biases and LayerNorm parameters do not.

Gradient accumulation needs no code here: the training loop scales each micro-batch's loss by
1/n_micro (backward's dloss) and sums the gradients, i.e. their mean.

Schedules (`--lr-schedule`), each a pure function of the iteration, so a resumed run gets
exactly the rates of an uninterrupted one:

    cosine            linear warmup, one cosine down to min_lr at lr_decay_iters, then flat
                      (nanoGPT's get_lr)
    cosine-restarts   the same warmup, then cosine cycles that restart at learning_rate:
                      the first lasts restart_period steps, each next one restart_mult times
                      longer (PyTorch's CosineAnnealingWarmRestarts with T_0, T_mult and
                      eta_min = min_lr, stepped once per iteration after the warmup)

Ref: Loshchilov & Hutter 2019 (AdamW); Loshchilov & Hutter 2017 (SGDR, warm restarts);
torch/optim/adamw.py; torch/optim/lr_scheduler.py CosineAnnealingWarmRestarts; nanoGPT
train.py get_lr.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .device import get_array_module

# Elements per slice in AdamW's update: four 1 MiB float32 operand slices and the scratch stay in
# a core's cache through all 14 operations; smaller slices cost more in Python overhead.
CHUNK = 1 << 18


def decays(param: np.ndarray) -> bool:
    """nanoGPT's rule: weight decay on tensors with ndim >= 2 only."""
    return param.ndim >= 2


class AdamW:
    """AdamW over a dict of named arrays, updated in place. State is a dict of arrays."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        threads: int | None = None,
    ):
        if not lr >= 0.0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        for name, p in params.items():
            if not p.flags.c_contiguous:  # updates go through flat views, which need this
                raise ValueError(f"AdamW needs C-contiguous parameters; {name} is not "
                                 "(pass np.ascontiguousarray(p))")
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.t = 0  # steps taken
        self.xp = xp = get_array_module(*params.values())  # numpy, or cupy on a GPU
        self.m = {k: xp.zeros_like(p) for k, p in params.items()}  # first moments
        self.v = {k: xp.zeros_like(p) for k, p in params.items()}  # second moments
        # Parameters update independently, so they are split into one group per core, each
        # updated by its own thread with its own scratch buffer (NumPy releases the GIL).
        # A GPU takes whole tensors in one thread: its kernels are parallel already.
        n = max(1, min(threads or os.cpu_count() or 1, len(params))) if xp is np else 1
        self.chunk = CHUNK if xp is np else max((p.size for p in params.values()), default=1)
        self.groups = balanced_groups(params, n)
        self.pool = ThreadPoolExecutor(n) if n > 1 else None
        self._buffers: list[np.ndarray | None] = [None] * n

    def step(self, grads: dict[str, np.ndarray], lr: float | None = None,
             grad_scale: float = 1.0) -> None:
        """One update of every parameter from `grads` (same keys), at `lr` (default self.lr).

        grad_scale multiplies the gradients before they are used (grads are scaled in place):
        clipping's coefficient (see clip_coef), applied inside the update instead of in a pass
        of its own, as torch's fused AdamW does with its grad_scale. Same values, bit for bit,
        as clip_grad_norm followed by step.
        """
        lr = self.lr if lr is None else lr
        self.t += 1
        if self.pool is None:
            self._update(0, grads, lr, grad_scale)
        else:
            list(self.pool.map(lambda i: self._update(i, grads, lr, grad_scale),
                               range(len(self.groups))))

    def _update(self, group: int, grads: dict[str, np.ndarray], lr: float,
                grad_scale: float) -> None:
        """Update this thread's parameters, CHUNK elements at a time.

        The update is 14 elementwise operations. Applied to whole tensors, each would stream
        its operands from main memory: at GPT-2 124M every pass moves 0.5-1.5 GB. Applied
        to slices that stay in cache, main memory sees each of p, g, m, v read once and
        p, m, v written once. The arithmetic is unchanged (elementwise), only its order
        over the elements. (On a GPU, self.chunk covers whole tensors: fewer kernel launches.)
        """
        xp = self.xp
        b1, b2 = self.betas
        bias1 = 1.0 - b1**self.t
        bias2_sqrt = math.sqrt(1.0 - b2**self.t)
        step_size = lr / bias1
        decay = 1.0 - lr * self.weight_decay
        scratch = self._scratch(group)
        for name in self.groups[group]:
            tensors = self.params[name], grads[name], self.m[name], self.v[name]
            flat = [t.reshape(-1) for t in tensors]  # views: params, m, v are contiguous
            decays_here = self.weight_decay != 0 and decays(tensors[0])
            for start in range(0, flat[0].size, self.chunk):
                p, g, m, v = (t[start : start + self.chunk] for t in flat)
                buf = scratch[: p.size]
                if grad_scale != 1.0:
                    g *= grad_scale
                if decays_here:
                    p *= decay  # p = p - lr wd p
                m *= b1  # m = b1 m + (1 - b1) g
                xp.multiply(g, 1.0 - b1, out=buf)
                m += buf
                v *= b2  # v = b2 v + (1 - b2) g^2
                xp.multiply(g, g, out=buf)
                buf *= 1.0 - b2
                v += buf
                xp.sqrt(v, out=buf)  # denom = sqrt(v) / sqrt(1 - b2^t) + eps
                buf /= bias2_sqrt
                buf += self.eps
                xp.divide(m, buf, out=buf)  # p -= step_size * m / denom
                buf *= step_size
                p -= buf

    def _scratch(self, group: int) -> np.ndarray:
        dtype = self.params[self.groups[group][0]].dtype
        buf = self._buffers[group]
        if buf is None or buf.dtype != dtype:
            buf = self._buffers[group] = self.xp.empty(self.chunk, dtype=dtype)
        return buf

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat name -> array dict (safetensors-ready): exp_avg.<name>, exp_avg_sq.<name>, step."""
        state = {f"exp_avg.{k}": m for k, m in self.m.items()}
        state.update({f"exp_avg_sq.{k}": v for k, v in self.v.items()})
        state["step"] = np.array([self.t], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, p in self.params.items():
            for prefix, store in (("exp_avg.", self.m), ("exp_avg_sq.", self.v)):
                arr = state.get(prefix + k)
                if arr is None or arr.shape != p.shape:
                    raise ValueError(f"optimizer state has no {prefix}{k} of shape {p.shape}")
                store[k] = self.xp.array(arr, dtype=p.dtype)
        self.t = int(state["step"][0])


def balanced_groups(params: dict[str, np.ndarray], n: int) -> list[list[str]]:
    """Split parameter names into n groups of about equal total size (largest first)."""
    groups: list[list[str]] = [[] for _ in range(n)]
    sizes = [0] * n
    for name in sorted(params, key=lambda k: -params[k].size):
        i = sizes.index(min(sizes))
        groups[i].append(name)
        sizes[i] += params[name].size
    return [g for g in groups if g]


def grad_norm(grads: dict[str, np.ndarray]) -> float:
    """The global L2 norm of all gradients together, as one flat vector."""
    return math.sqrt(sum(float(get_array_module(g).vdot(g, g)) for g in grads.values()))


def clip_coef(norm: float, max_norm: float) -> float:
    """The factor that brings a gradient of this norm to at most max_norm (1.0: no change).

    Same rule as torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only
    when coef < 1.
    """
    coef = max_norm / (norm + 1e-6)
    return min(1.0, coef)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most max_norm.

    Returns the norm before clipping. The training loop instead passes clip_coef(norm) to
    AdamW.step(grad_scale=...), which saves a pass over the gradients.
    """
    total = grad_norm(grads)
    coef = clip_coef(total, max_norm)
    if coef != 1.0:
        for g in grads.values():
            g *= coef
    return total


def get_lr(
    it: int, *, learning_rate: float, warmup_iters: int, lr_decay_iters: int, min_lr: float
) -> float:
    """Linear warmup for warmup_iters, then cosine decay to min_lr at lr_decay_iters, then flat.

    Exactly nanoGPT's get_lr (warmup uses (it + 1) / (warmup_iters + 1)).
    """
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(decay_ratio, 1.0)))
    return min_lr + coeff * (learning_rate - min_lr)


LR_SCHEDULES = ("cosine", "cosine-restarts")


def get_lr_restarts(
    it: int, *, learning_rate: float, warmup_iters: int, restart_period: int,
    restart_mult: int, min_lr: float
) -> float:
    """Linear warmup as get_lr, then cosine cycles from learning_rate down towards min_lr,
    restarting at learning_rate: the first cycle lasts restart_period steps, each next one
    restart_mult times as long.

    After the warmup this is PyTorch's CosineAnnealingWarmRestarts(T_0=restart_period,
    T_mult=restart_mult, eta_min=min_lr) after (it - warmup_iters) calls of step(), to the
    bit: T_cur and T_i are found with the same integer arithmetic as its step() (not its
    float logarithm, which can land one cycle off at a boundary), and the rate is its
    expression, term for term.
    """
    if restart_period < 1 or restart_mult < 1:
        raise ValueError(f"restart period and multiplier must be >= 1, got {restart_period} "
                         f"and {restart_mult}")
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    t_cur, t_i = it - warmup_iters, restart_period  # steps into this cycle, its length
    if restart_mult == 1:
        t_cur %= t_i
    else:  # at most log_mult(it / period) cycles to skip
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= restart_mult
    return min_lr + (learning_rate - min_lr) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
