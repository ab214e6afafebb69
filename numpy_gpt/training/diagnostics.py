"""Training diagnostics: per-layer gradient norms and update-to-weight ratios, and their plot.

Two numbers per weight matrix, the ones Karpathy reads in "Building makemore" part 3:

    grad_norm[name]     = ||g||                 the raw gradient, before clipping
    update_ratio[name]  = ||W_new - W|| / ||W||  how far one optimizer step moves the weight,
                                               relative to its size (healthy: around 1e-3;
                                               much lower learns slowly, much higher thrashes)

Only 2-D weights are reported (embeddings and Linear weights); biases and LayerNorm gains are
left out, as in the lecture. Measuring the update needs a copy of the weights before one step,
so the training loop probes only the step taken just before each evaluation: the cost is one
copy of the weights per eval interval. The record logged at iteration `it` therefore describes
the optimizer step from it-1 to it (the first evaluation, before any step, has none).

The probe reads either twin's backend by duck typing (the NumPy backend's `model.params` and
`grads`; the torch backend's `trained_parameters()` and their `.grad`), without importing
torch (STYLE.md L2).

Ref: Karpathy, "Building makemore Part 3: Activations & Gradients, BatchNorm" (2022).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safe_io import save_figure
from ..nn.device import to_numpy

GRAD_NORM = "grad_norm"
UPDATE_RATIO = "update_ratio"


def probe_due(next_it: int, eval_interval: int, max_iters: int) -> bool:
    """True when iteration next_it is evaluated, so the step leading to it should be probed."""
    return next_it % eval_interval == 0 or next_it == max_iters


def short_name(name: str) -> str:
    """'transformer.h.0.attn.c_attn.weight' -> 'h.0.attn.c_attn'; 'lm_head.weight' -> 'lm_head'."""
    return name.removeprefix("transformer.").removesuffix(".weight")


def _as_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor (not imported here)
        return t.detach().float().cpu().numpy()
    return to_numpy(t)


def _weights_and_grads(backend: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (live weight, its gradient) for every 2-D weight that has a gradient."""
    pairs = {}
    if hasattr(backend, "trained_parameters"):  # torch twin
        for name, p in backend.trained_parameters().items():
            if p.ndim == 2 and p.grad is not None:
                pairs[name] = (p, p.grad)
    else:  # NumPy twin
        grads = getattr(backend, "grads", None) or {}
        for name, w in backend.model.params.items():
            if w.ndim == 2 and name in grads:
                pairs[name] = (w, grads[name])
    return pairs


class StepProbe:
    """Take it before backend.step(): it records the gradient norms and a copy of the weights;
    finish() after the step returns the record fields."""

    def __init__(self, backend: Any):
        self.pairs = _weights_and_grads(backend)
        scale = 1.0
        scaler = getattr(backend, "scaler", None)  # torch fp16: gradients are still scaled
        if scaler is not None and getattr(scaler, "is_enabled", lambda: False)():
            scale = 1.0 / float(scaler.get_scale())
        self.grad_norm = {short_name(n): float(np.linalg.norm(_as_numpy(g))) * scale
                          for n, (_, g) in self.pairs.items()}
        self.before = {n: _as_numpy(w).astype(np.float64) for n, (w, _) in self.pairs.items()}

    def finish(self) -> dict[str, dict[str, float]]:
        ratio = {}
        for n, (w, _) in self.pairs.items():
            new = _as_numpy(w).astype(np.float64)
            ratio[short_name(n)] = float(np.linalg.norm(new - self.before[n])
                                         / max(np.linalg.norm(self.before[n]), 1e-30))
        return {GRAD_NORM: self.grad_norm, UPDATE_RATIO: ratio}


def plot_training(records: list[dict], path: str | Path, title: str = "") -> bool:
    """diagnostics.png: the loss curve beside per-layer gradient norms and update/weight ratios
    (log scale, with the 1e-3 guide line). False when matplotlib is missing or no record has
    diagnostics (e.g. a log written before they existed)."""
    with_diag = [r for r in records if GRAD_NORM in r]
    if not records or not with_diag:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), dpi=100)
    its = [r["iter"] for r in records]
    axes[0].plot(its, [r["train_loss"] for r in records], marker=".", label="train")
    axes[0].plot(its, [r["val_loss"] for r in records], marker=".", label="val")
    axes[0].set_title("loss")
    axes[0].set_ylabel("cross-entropy")
    d_its = [r["iter"] for r in with_diag]
    names = list(with_diag[-1][GRAD_NORM])
    cmap = plt.get_cmap("viridis")
    for key, ax, label in ((GRAD_NORM, axes[1], "gradient norm ||g||"),
                           (UPDATE_RATIO, axes[2], "update / weight  ||ΔW|| / ||W||")):
        for j, name in enumerate(names):
            ys = [r[key].get(name, math.nan) for r in with_diag]
            ax.plot(d_its, ys, marker=".", color=cmap(j / max(len(names) - 1, 1)),
                    label=name, lw=1)
        ax.set_yscale("log")
        ax.set_title(label)
    axes[2].axhline(1e-3, color="k", ls="--", lw=1, label="1e-3 guide")
    axes[2].legend(fontsize=6, ncol=2, loc="best")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))
    path = Path(path)
    save_figure(fig, path)  # through a temporary file; a write fault is a WriteError
    return True
