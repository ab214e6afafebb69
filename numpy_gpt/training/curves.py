"""Several training runs' loss curves in one picture: `plot runs --run A --run B`.

    records = read_runs(["out/numpy", "out/torch"])      # {label: log.jsonl's records}
    plot_runs(records, "twins.png", title="...")         # False without matplotlib

Left: train and val loss of every run against the iteration (one colour per run, val solid,
train dashed). Right, with exactly two runs: the absolute difference of their val and train
losses at the iterations both evaluated (log scale), so two runs that match to rounding show
how far apart they are instead of one line drawn over the other.

Deliberately omits: per-step training losses (log.jsonl holds evaluations only) and runs of
different lengths beyond their common iterations on the right.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files.safe_io import save_figure
from .train import LOG_FILE


def read_runs(folders: list[str | Path], labels: list[str] | None = None
              ) -> dict[str, list[dict]]:
    """{label: records} of each run folder's log.jsonl; the label is the folder's name unless
    given. A folder without a log is a FileNotFoundError naming it."""
    labels = labels or [Path(f).name for f in folders]
    if len(labels) != len(folders):
        raise ValueError(f"{len(labels)} --label for {len(folders)} --run: give one per run "
                         "or none")
    if len(set(labels)) != len(labels):
        raise ValueError(f"two runs share the label {labels}; pass --label NAME for each run")
    runs = {}
    for label, folder in zip(labels, folders):
        log = Path(folder) / LOG_FILE
        if not log.is_file():
            raise FileNotFoundError(f"{log} not found: --run must be a `train --out` folder")
        runs[label] = [json.loads(line) for line in log.read_text().splitlines()
                       if line.strip()]
        if not runs[label]:
            raise ValueError(f"{log} has no evaluation yet")
    return runs


def loss_differences(a: list[dict], b: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{"val": [(iter, |a - b|)], "train": [...]} at the iterations both runs evaluated."""
    at_b = {r["iter"]: r for r in b}
    common = [(r, at_b[r["iter"]]) for r in a if r["iter"] in at_b]
    return {k: [(ra["iter"], abs(ra[f"{k}_loss"] - rb[f"{k}_loss"])) for ra, rb in common]
            for k in ("val", "train")}


def plot_runs(runs: dict[str, list[dict]], path: str | Path, title: str = "") -> bool:
    """The picture (module docstring); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pair = len(runs) == 2
    fig, axes = plt.subplots(1, 2 if pair else 1, figsize=(13 if pair else 7, 4.5), dpi=100,
                             squeeze=False)
    ax = axes[0][0]
    for j, (label, records) in enumerate(runs.items()):
        colour = f"C{j}"
        its = [r["iter"] for r in records]
        ax.plot(its, [r["val_loss"] for r in records], color=colour, marker="o",
                markersize=7 - 3 * j, label=f"{label} val", lw=1.5)
        ax.plot(its, [r["train_loss"] for r in records], color=colour, ls="--", marker=".",
                label=f"{label} train", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if pair:
        (name_a, a), (name_b, b) = runs.items()
        ax = axes[0][1]
        for k, style in (("val", "-"), ("train", "--")):
            points = [(it, d) for it, d in loss_differences(a, b)[k] if d > 0]
            if points:
                ax.plot(*zip(*points), ls=style, marker="o", label=f"{k} loss")
        equal = [it for it, d in loss_differences(a, b)["val"] if d == 0]
        if equal:
            ax.plot(equal, [1e-9] * len(equal), ls="", marker="v", color="k",
                    label="val equal (drawn at 1e-9)")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("|difference|")
        ax.set_title(f"|{name_a} - {name_b}|")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True
