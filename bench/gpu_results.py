"""What `python -m bench.gpu_check` leaves in OUT_DIR: its steps' results merged, and graded.

    summary = collect(scratch, out, results, dry, STEPS)   # the results files, in OUT_DIR
    print(format_summary(summary))                         # the summary's lines

Each bench step writes bench's JSON into the scratch folder (or, cut at its limit, only the
rows it finished, in PATH.partial.jsonl); `collect` merges them into one results file set in
the format of bench/results/ (`<machine>.json`, `.md`, `.png`, so committing them is a copy),
copies the parity JSON, and grades DESIGN.md's CUDA targets on those rows: MET, MISS, or no
data with the reason, never a guess from missing rows.

Deliberately omits: the steps (gpu_steps.py); running them and writing summary.json
(gpu_check.py); the table, chart and header formats themselves (report.py, plot.py, env.py).
Ref: DESIGN.md (the CUDA targets graded here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .gpu_steps import Step


def collect(tmp: Path, out: Path, results: list[dict[str, Any]], dry: bool,
            steps: list[Step]) -> dict[str, Any]:
    """Merge the bench steps' JSON into one results file set; copy the parity JSON.
    `steps`: the whole table (a step that did not run has no file and adds nothing)."""
    from .report import format_env, format_targets, markdown_table, targets, write_json

    machine = _read(tmp / "machine.json")
    for name in ("parity.json", "parity-hf.json"):
        if (tmp / name).exists():
            shutil.copyfile(tmp / name, out / name)
    env, rows, peaks = None, [], {}
    for step in steps:
        if not step.name.startswith("bench"):
            continue
        data = _read(tmp / f"{step.name}.json")
        if data is None:  # the step ran out: keep the rows its bench finished
            from .cli import partial_path

            done = _read_lines(partial_path(tmp / f"{step.name}.json"))
            data = {"env": None, "peaks": {}, "rows": [
                dict(r, partial_run=True) for r in done]} if done else None
        if data is None:
            continue
        env = env or data["env"]
        peaks.update(data.get("peaks") or {})
        rows += [dict(r, gpu_check_step=step.name) for r in data["rows"]]
    if env is None and rows:  # only partial rows: describe the machine here
        from .env import cpu_cores, env_info

        env = env_info(cpu_cores(), "python -m bench.gpu_check")
    files = []
    if env is not None:
        env = dict(env, gpu_check={"dry_run": dry, "machine": machine})
        base = out / (env["machine_id"] + ("-dry-run" if dry else ""))
        write_json(base.with_suffix(".json"), env, rows, peaks)
        md = (f"# bench results: {env['machine_id']} (bench/gpu_check.py"
              f"{' --dry-run' if dry else ''})\n\n```\n{format_env(env, peaks)}\n```\n\n"
              f"{markdown_table(rows)}\n\n```\n{format_targets(targets(rows))}\n```\n")
        base.with_suffix(".md").write_text(md, encoding="utf-8")
        files += [base.with_suffix(".json").name, base.with_suffix(".md").name]
        from .plot import plot

        try:
            if plot(rows, base.with_suffix(".png")):
                files.append(base.with_suffix(".png").name)
        except Exception as e:  # noqa: BLE001 -- a chart must not lose the figures
            results.append({"name": "chart", "status": "failed", "seconds": 0.0,
                            "reason": f"{type(e).__name__}: {e}"})
    parity = _read(out / "parity.json")
    return {"dry_run": dry, "machine": machine, "steps": results,
            "targets": cuda_targets(rows, parity), "files": files,
            "ok": all(r["status"] == "ok" for r in results)}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
    except (OSError, ValueError):
        return []


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------ targets


def cuda_targets(rows: list[dict[str, Any]], parity: dict[str, Any] | None
                 ) -> list[dict[str, Any]]:
    """DESIGN.md's CUDA targets, each MET, MISS or "no data" (with why), from this run."""
    def row(backend: str, size: str, workload: str = "train") -> dict[str, Any] | None:
        for r in rows:
            if (r["backend"], r["size"], r["workload"], r["status"]) == \
                    (backend, size, workload, "ok"):
                return r
        return None

    out = []
    f64 = [r for r in (parity or {}).get("rows", [])
           if r.get("device") == "cuda" and r.get("dtype") == "float64"]
    cupy = [r for r in (parity or {}).get("rows", []) if str(r.get("case", "")).startswith(
        "cupy:")]
    out.append(_target("parity on CUDA float64 (torch) within the CPU's float64 tolerances",
                       None if not f64 else all(r["ok"] for r in f64),
                       f"{sum(r['ok'] for r in f64)}/{len(f64)} rows ok" if f64 else
                       "no float64 CUDA parity rows"))
    out.append(_target("numpy_gpt on CuPy passes parity (cupy:<case> rows)",
                       None if not cupy else all(r["ok"] for r in cupy),
                       f"{sum(r['ok'] for r in cupy)}/{len(cupy)} rows ok" if cupy else
                       "no cupy rows"))
    comp = row("torch-cuda-compile", "gpt2-124m-B16")
    mfu = comp.get("mfu") if comp else None
    out.append(_target("torch bf16 compiled GPT-2 124M (B=16, T=1024) MFU >= 40 % of the "
                       "measured bf16 matmul", None if mfu is None else mfu >= 0.40,
                       f"{mfu:.1%}" if mfu is not None else "no row"))
    for size in ("gpt2-124m", "gpt2-124m-B16"):
        cp, tf = row("cupy-f32", size), row("torch-cuda-fp32", size)
        ratio = cp["ms_median"] / tf["ms_median"] if cp and tf else None
        out.append(_target(f"cupy-f32 train step <= 2x torch-cuda-fp32 (TF32 off) at {size}",
                           None if ratio is None else ratio <= 2.0,
                           f"{ratio:.2f}x" if ratio is not None else "no rows"))
    mem = sorted((r["sweep_value"], r["peak_mem_mb"]) for r in rows
                 if r["backend"] == "cupy-f32" and r.get("sweep") == "T"
                 and r["status"] == "ok" and r.get("peak_mem_mb"))
    if len(mem) >= 2:
        (t0, m0), (t1, m1) = mem[0], mem[-1]
        growth = (m1 / m0) / (t1 / t0)  # 1 for linear, T1/T0 for quadratic
        out.append(_target(f"CuPy tiled attention train-step memory O(T) to T={t1}",
                           growth <= 1.5, f"memory x{m1 / m0:.1f} for T x{t1 / t0:.0f} "
                           f"({m0:.0f} -> {m1:.0f} MiB)"))
    else:
        out.append(_target("CuPy tiled attention train-step memory O(T) to T=8192", None,
                           "fewer than two sweep points"))
    return out


def _target(what: str, met: bool | None, value: str) -> dict[str, Any]:
    return {"target": what, "met": met, "value": value}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [(f"gpu_check{' --dry-run' if summary['dry_run'] else ''}: "
             f"{'all steps ok' if summary['ok'] else 'NOT all steps ok'} in "
             f"{summary.get('seconds', 0):.0f} s")]
    for r in summary["steps"]:
        why = f"  ({r['reason']})" if r.get("reason") else ""
        lines.append(f"  {r['status']:8} {r['name']:15} {r['seconds']:6.1f} s{why}")
    lines.append("targets (DESIGN.md, CUDA):")
    for t in summary["targets"]:
        word = {True: "MET ", False: "MISS", None: "----"}[t["met"]]
        lines.append(f"  {word} {t['target']}: {t['value']}")
    lines.append("files: " + ", ".join(summary["files"] + ["parity.json", "parity-hf.json",
                                                            "summary.json", "gpu_check.log"]))
    return "\n".join(lines)
