"""Attention maps: where each head of each layer looks, for one prompt.

    maps = attention_maps(model, ids)        # (n_layer, NH, T, T): row i = what token i attends to
    plot_attention(maps, labels, "attention.png")

The weights are the softmax probabilities P of every head, read from the forward pass's cache
(numpy_gpt.nn.layers.attention caches P for its backward), so nothing is recomputed and the maps
are exactly what the model used. Eval mode: no attention dropout. Each row sums to 1 and the
upper triangle is 0 (the causal mask).

Ref: Vig, "A Multiscale Visualization of Attention in the Transformer Model" (2019), for the
layer x head grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..files.safe_io import save_figure
from .device import to_numpy

MAX_LABELED_T = 40  # above this many tokens the axes are too crowded to label


def attention_maps(model: Any, ids: Any) -> np.ndarray:
    """The attention weights of every layer and head for one prompt (the last block_size ids).

    Shapes: ids (T,) int -> maps (n_layer, NH, T, T), float64 on the host.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        raise ValueError("the prompt is empty: attention maps need at least one token")
    ids = ids[-model.config.block_size:]
    _, _, cache = model.forward(ids[None, :], attention="full")  # the kernel that keeps P
    return np.stack([to_numpy(block.attn.att)[0] for block in cache.blocks]).astype(np.float64)


def token_labels(tokenizer: Any, ids: Any) -> list[str]:
    """One short printable label per token id ('\\n' shown as ⏎, spaces as ␣)."""
    labels = []
    for i in np.asarray(ids).reshape(-1):
        text = tokenizer.decode([int(i)])
        labels.append(text.replace("\n", "⏎").replace(" ", "␣")[:12] or "∅")
    return labels


def plot_attention(maps: np.ndarray, labels: list[str], path: str | Path,
                   title: str = "") -> bool:
    """A grid of heatmaps, one row per layer and one column per head; rows of each map are
    the attending (query) tokens, columns the attended (key) tokens. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n_layer, n_head, T, _ = maps.shape
    side = min(max(2.2, 0.22 * T), 5.0)
    fig, axes = plt.subplots(n_layer, n_head, figsize=(side * n_head + 1, side * n_layer + 0.6),
                             dpi=100, squeeze=False)
    show_labels = T <= MAX_LABELED_T
    font = max(4, min(8, 200 // max(T, 1)))
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer][head]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer}, head {head}", fontsize=8)
            if show_labels:
                ax.set_xticks(range(T), labels, rotation=90, fontsize=font)
                ax.set_yticks(range(T), labels, fontsize=font)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(title or "attention weights (row: query token, column: key token)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # room for the title
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)  # through a temporary file; a write fault is a WriteError
    return True
