"""What `python -m numpy_gpt compare` found: the summary, its Markdown table, the picture.

    summary = summarize(runs)                  # per variant: mean and spread over seeds
    write_report(out_dir, runs, summary, env, extra)   # compare.json, compare.md, compare.png

Two comparison points per variant:
- equal time: the val loss when the training-time budget ran out (each run's last point);
- equal steps: the val loss at the largest step every run evaluated, i.e. the smallest step
  count reached, rounded down to an evaluation step (compare.py evaluates each run at the
  same multiples of eval_every, so every run has that point).

Spread: mean ± the sample standard deviation over seeds, and for each difference from the
baseline (the first variant) the per-seed paired differences' mean and [min, max]; a
difference whose range includes 0 is marked ≈ (within the spread over seeds: some seed
says the other way). Seeds are paired because a seed fixes the batches every variant sees.

Deliberately omits: significance tests (three seeds make a poor t-test; the range is shown
instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safe_io import save_figure, write_text_atomic
from .compare import VARIANTS

JSON_FILE, MARKDOWN_FILE, PICTURE_FILE = "compare.json", "compare.md", "compare.png"
METRICS = ("equal_time", "equal_steps", "full_val")


def stats(values: list[float]) -> dict[str, Any]:
    """mean, sample standard deviation (0 for one value), min, max and the values."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "values": [float(v) for v in a]}


def val_at(run: dict[str, Any], step: int) -> float:
    return next(p["val_loss"] for p in run["curve"] if p["step"] == step)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant (in the runs' order): parameters, steps, ms per step, the val loss at equal
    time, at equal steps and on the full split (when evaluated), each difference from the
    first variant paired by seed, and the load the runs saw."""
    names = list(dict.fromkeys(r["variant"] for r in runs))
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    by = {(r["variant"], r["seed"]): r for r in runs}
    missing = [f"{n} seed {s}" for n in names for s in seeds if (n, s) not in by]
    if missing:
        raise ValueError(f"runs missing for {', '.join(missing)}: every variant needs every seed")
    common = set.intersection(*({p["step"] for p in r["curve"]} for r in runs))
    equal_steps = max(common)  # step 0 is evaluated in every run
    base = names[0]

    def values(name: str, metric: str) -> list[float] | None:
        rs = [by[name, s] for s in seeds]
        if metric == "equal_time":
            return [r["val_loss"] for r in rs]
        if metric == "equal_steps":
            return [val_at(r, equal_steps) for r in rs]
        full = [r["full_val_loss"] for r in rs]
        return None if None in full else full

    rows = {}
    for name in names:
        rs = [by[name, s] for s in seeds]
        row: dict[str, Any] = {
            "label": VARIANTS.get(name, name), "params": rs[0]["params"],
            "ffn_hidden": rs[0]["ffn_hidden"], "arch": rs[0]["arch"],
            "steps": stats([r["steps"] for r in rs]),
            "ms_per_step": stats([r["ms_per_step"] for r in rs]),
            "others_share": stats([r["load"]["others_share"] or 0.0 for r in rs]),
            "loadavg_1m": stats([(r["load"]["loadavg_start"] or [0.0])[0] for r in rs])}
        for metric in METRICS:
            own, ref = values(name, metric), values(base, metric)
            row[metric] = None if own is None else stats(own)
            row[f"{metric}_delta"] = (None if own is None or ref is None or name == base
                                      else stats([a - b for a, b in zip(own, ref)]))
        rows[name] = row
    return {"variants": names, "seeds": seeds, "baseline": base, "equal_steps": equal_steps,
            "min_steps": min(r["steps"] for r in runs),
            "max_steps": max(r["steps"] for r in runs), "rows": rows}


# ---------------------------------------------------------------------------- Markdown


def within_spread(delta: dict[str, Any]) -> bool:
    """Some seed's paired difference has the other sign (or is 0): not resolved by the seeds."""
    return delta["min"] <= 0.0 <= delta["max"]


def _loss(s: dict[str, Any] | None) -> str:
    return "–" if s is None else f"{s['mean']:.4f} ± {s['sd']:.4f}"


def _delta(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    mark = " ≈" if within_spread(d) and len(d["values"]) > 1 else ""
    return f"{d['mean']:+.4f} [{d['min']:+.4f}, {d['max']:+.4f}]{mark}"


def markdown(summary: dict[str, Any], env: dict[str, Any], seconds: float) -> str:
    """The table and the lines that say where, how and under what load it was measured."""
    S, base = summary["equal_steps"], summary["rows"][summary["baseline"]]["label"]
    n = len(summary["seeds"])
    full = all(row["full_val"] is not None for row in summary["rows"].values())
    head = (f"| variant | params | MLP F | steps in {seconds:g} s | ms/step | "
            f"val at {seconds:g} s | Δ vs {base} | val at step {S:,} | Δ vs {base} | "
            + (f"full val at {seconds:g} s | Δ vs {base} | " if full else "")
            + "others' CPU |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in summary["rows"].values():
        steps = row["steps"]
        cells = [row["label"], f"{row['params']:,}", str(row["ffn_hidden"]),
                 f"{steps['mean']:,.0f} ({steps['min']:,.0f}-{steps['max']:,.0f})",
                 f"{row['ms_per_step']['mean']:.1f}"]
        for metric in METRICS if full else METRICS[:2]:
            cells += [_loss(row[metric]), _delta(row[f"{metric}_delta"])]
        cells.append(f"{100 * row['others_share']['mean']:.0f} %")
        lines.append("| " + " | ".join(cells) + " |")
    loads = [v for r in summary["rows"].values() for v in r["loadavg_1m"]["values"]]
    others = [v for r in summary["rows"].values() for v in r["others_share"]["values"]]
    seeds = ", ".join(map(str, summary["seeds"]))
    notes = [
        "",
        (f"Machine: {env['cpu_model']}, {env['cores']} cores; NumPy {env['numpy']} on "
         f"{env['blas']} (threadpoolctl). Command: `{env['command']}`."),
        (f"{n} seed{'s' if n > 1 else ''} ({seeds}) per variant, interleaved; {seconds:g} s "
         "of training time per run (evaluation not counted). Val loss on "
         f"{env['eval_windows']} fixed windows ({env['eval_tokens']:,} of the "
         f"{env['val_tokens']:,} val tokens), the same for every run"
         + ("; full val: every whole window of the split" if full else "")
         + f". Equal steps: step {S:,}, the last evaluation every run "
         f"reached (the fewest steps any run made: {summary['min_steps']:,})."),
        (f"Mean ± standard deviation over seeds; Δ: the mean of the per-seed differences "
         f"from {base} (same seed, same batches) and their [min, max]; ≈: the range "
         "includes 0, so the difference is within the spread over seeds."),
        (f"Load while running: 1-minute load average {min(loads):.2f}-{max(loads):.2f} at "
         f"the runs' starts; other processes used {100 * min(others):.0f}-"
         f"{100 * max(others):.0f} % of the machine's CPU per run."),
    ]
    return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------- the picture


def mean_curve(runs: list[dict[str, Any]]) -> tuple[list[int], list[float], list[float]]:
    """(steps, mean time, mean val loss) over runs, at the steps every one of them evaluated."""
    common = sorted(set.intersection(*({p["step"] for p in r["curve"]} for r in runs)))
    at = [{p["step"]: p for p in r["curve"]} for r in runs]
    return (common, [float(np.mean([a[s]["time_s"] for a in at])) for s in common],
            [float(np.mean([a[s]["val_loss"] for a in at])) for s in common])


def plot(runs: list[dict[str, Any]], summary: dict[str, Any], path: str | Path,
         title: str = "", seconds: float | None = None) -> bool:
    """Val loss against training time (left) and against steps (right): each seed thin,
    the mean over seeds thick; the y axis starts after the first quarter of the common
    steps, where the curves part. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    S = summary["equal_steps"]
    late = [p["val_loss"] for r in runs for p in r["curve"] if p["step"] >= S / 4]
    low = min(p["val_loss"] for r in runs for p in r["curve"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=100, sharey=True)
    for j, name in enumerate(summary["variants"]):
        mine = [r for r in runs if r["variant"] == name]
        colour = f"C{j}"
        for r in mine:
            xs = [(p["time_s"], p["step"]) for p in r["curve"]]
            ys = [p["val_loss"] for p in r["curve"]]
            for k, ax in enumerate(axes):
                ax.plot([x[k] for x in xs], ys, color=colour, lw=0.7, alpha=0.35)
        steps, times, means = mean_curve(mine)
        label = summary["rows"][name]["label"]
        axes[0].plot(times, means, color=colour, lw=2, label=label)
        axes[1].plot(steps, means, color=colour, lw=2, label=label)
        # the equal-time point: the mean over seeds of where each run's budget ran out
        ends = [r["curve"][-1] for r in mine]
        axes[0].plot(np.mean([p["time_s"] for p in ends]), np.mean([p["val_loss"] for p in ends]),
                     color=colour, marker="o")
    if seconds is not None:
        axes[0].axvline(seconds, color="k", ls=":", lw=1)
    axes[1].axvline(S, color="k", ls=":", lw=1, label=f"equal steps ({S:,})")
    axes[0].set_title("against training time (thin: each seed, thick: the mean over "
                      "seeds, dot: the mean where the budget ran out)", fontsize=9)
    axes[1].set_title("against steps (the same runs)", fontsize=9)
    axes[0].set_xlabel("training time (s)")
    axes[1].set_xlabel("step")
    axes[0].set_ylabel("val loss (fixed windows)")
    axes[0].set_ylim(low - 0.02, max(late) + 0.02)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def write_report(out_dir: Path, runs: list[dict[str, Any]], summary: dict[str, Any],
                 env: dict[str, Any], settings: dict[str, Any], title: str) -> list[Path]:
    """compare.json (env, settings, summary, every run), compare.md and compare.png in
    out_dir; the paths written (the picture only with matplotlib)."""
    written = [out_dir / JSON_FILE, out_dir / MARKDOWN_FILE]
    write_text_atomic(written[0], json.dumps({"env": env, "settings": settings,
                                              "summary": summary, "runs": runs}, indent=1))
    write_text_atomic(written[1], markdown(summary, env, settings["seconds"]))
    if plot(runs, summary, out_dir / PICTURE_FILE, title, settings["seconds"]):
        written.append(out_dir / PICTURE_FILE)
    return written
