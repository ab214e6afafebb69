"""PNG charts of a run (matplotlib, Agg backend: no display needed).

    plot(rows, "bench.png")

Panels, each drawn only when the run has the rows for it:
    time vs n_embd    (sweep "n_embd"): ms per step, one line per backend, log-log axes
    time vs T         (sweep "T"): same, over the sequence length
    memory vs T       (sweep "T"): peak memory of the step, MiB, log-log (attention memory
                      linear in T shows as slope 1 once it dominates; a (T, T) matrix as 2)
    MFU               bars per backend at each named size (train workload if measured,
                      else the first workload with MFU numbers)
    decoding          GB/s bars per backend for each generation row (size / workload), the
                      measured memory bandwidth as a dashed line, MBU printed on the bars
                      that have one (bench/roofline.py: none for a model inside the cache)
On log-log axes a slope of 2 means cost grows with the square of the swept quantity (the
matmuls in C; attention in T), a slope of 1 means linear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok"]


def _pick_workload(rows: list[dict[str, Any]]) -> str | None:
    workloads = [r["workload"] for r in rows]
    if "train" in workloads:
        return "train"
    return workloads[0] if workloads else None


def plot(rows: list[dict[str, Any]], path: str | Path) -> bool:
    """Write the chart; False (and no file) when no row was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ok = _ok(rows)
    panels: list[tuple[str, Any]] = []
    for sweep, label in (("n_embd", "n_embd (C)"), ("T", "sequence length T")):
        pts = [r for r in ok if r["sweep"] == sweep]
        if pts:
            panels.append(("sweep", (sweep, label, pts)))
    mem = [r for r in ok if r["sweep"] == "T" and r.get("peak_mem_mb")]
    if mem:
        panels.append(("mem", mem))
    named = [r for r in ok if r["sweep"] is None and r["mfu"] is not None]
    if named:
        panels.append(("mfu", named))
    decode = [r for r in ok if r.get("gbps") is not None]
    if decode:
        panels.append(("mbu", decode))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (kind, data) in zip(axes[0], panels):
        if kind in ("sweep", "mem"):
            sweep, label, pts = data if kind == "sweep" else ("T", "sequence length T", data)
            key = "ms_median" if kind == "sweep" else "peak_mem_mb"
            workload = _pick_workload(pts)
            for backend in dict.fromkeys(r["backend"] for r in pts):
                line = sorted((r["sweep_value"], r[key]) for r in pts
                              if r["backend"] == backend and r["workload"] == workload)
                ax.plot([x for x, _ in line], [y for _, y in line], "o-", label=backend)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            xs = sorted({r["sweep_value"] for r in pts})
            ax.set_xticks(xs, [str(x) for x in xs])  # the swept values, not powers of 2
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            if kind == "sweep":
                ax.set_ylabel(f"ms per {workload} step (median)")
                ax.set_title(f"{workload} time vs {sweep}")
            else:
                ax.set_ylabel(f"peak memory of a {workload} step, MiB")
                ax.set_title(f"{workload} peak memory vs T")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        elif kind == "mbu":
            _decoding_panel(ax, data)
        else:
            workload = _pick_workload(data)
            pts = [r for r in data if r["workload"] == workload]
            sizes = list(dict.fromkeys(r["size"] for r in pts))
            backends = list(dict.fromkeys(r["backend"] for r in pts))
            width = 0.8 / max(len(backends), 1)
            for i, backend in enumerate(backends):
                vals = {r["size"]: 100 * r["mfu"] for r in pts if r["backend"] == backend}
                xs = [j + i * width for j, s in enumerate(sizes) if s in vals]
                ax.bar(xs, [vals[s] for s in sizes if s in vals], width, label=backend)
            ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(sizes))])
            ax.set_xticklabels(sizes)
            ax.axhline(75, color="gray", ls="--", lw=1)  # DESIGN.md: numpy-f32 at 6L-384
            ax.set_ylabel("MFU, % of the measured matmul peak")
            ax.set_title(f"{workload}: model FLOP utilization")
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _decoding_panel(ax: Any, rows: list[dict[str, Any]]) -> None:
    """GB/s of each generation row, grouped by (size, workload), a bar per backend; the
    best measured bandwidth of the device as a dashed line; MBU above the bars."""
    groups = list(dict.fromkeys((r["size"], r["workload"]) for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        vals = {(r["size"], r["workload"]): r for r in rows if r["backend"] == backend}
        xs = [j + i * width for j, g in enumerate(groups) if g in vals]
        bars = ax.bar(xs, [vals[g]["gbps"] for g in groups if g in vals], width,
                      label=backend)
        for bar, g in zip(bars, [g for g in groups if g in vals]):
            if vals[g].get("mbu") is not None:
                ax.annotate(f"{100 * vals[g]['mbu']:.0f}%", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=7)
    for bw in sorted({r["bandwidth_gbps"] for r in rows if r.get("bandwidth_gbps")}):
        ax.axhline(bw, color="gray", ls="--", lw=1)
        ax.annotate(f"measured {bw:.0f} GB/s", (0, bw), fontsize=7, va="bottom")
    ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(groups))])
    ax.set_xticklabels([f"{s}\n{w}" for s, w in groups], fontsize=7)
    ax.set_ylabel("GB/s read (weights + KV cache), MBU on the bars")
    ax.set_title("decoding: memory roofline")
    ax.legend(fontsize=8)
