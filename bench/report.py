"""Reporting: the console table, the DESIGN.md target ratios, JSON and the results file.

    print(format_table(rows)); print(format_targets(targets(rows)))
    write_json(path, env, rows, peaks)

JSON layout: {"env": {...}, "peaks": {peak_key: {...}}, "targets": [...], "rows": [...]},
one row per (backend, size, workload) measurement (DESIGN.md "bench --json").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TARGET_SIZES = ("baby", "6L-384", "gpt2-124m")
LLAMA_TARGET_SIZES = ("llama-6L-384", "llama-135m")  # issue 25: named, not in the defaults


def _num(x: float | None, fmt: str) -> str:
    """format(x, fmt), or "-" right-aligned to the same width for a missing number."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        width = "".join(c for c in fmt.split(".")[0] if c.isdigit())
        return "-".rjust(int(width or 0))
    return format(x, fmt)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _notes(r: dict[str, Any]) -> str:
    """The note column: why a row is not ok, else what qualifies its figures."""
    if r["status"] != "ok":
        return r["reason"]
    notes = []
    if r["compiled"] and r["first_call_ms"] is not None:
        # the compile happens in the first call of each graph: the check's forward (no_grad)
        # or this workload's first warm-up step
        notes.append(f"first call {r['first_call_ms'] / 1e3:.1f} s")
    if (r.get("foreign_cpu") or 0) > BUSY_SHARE:
        notes.append(f"busy machine: other processes used {100 * r['foreign_cpu']:.0f}% of "
                     "the CPU")
    if r.get("roofline_note"):
        notes.append(r["roofline_note"])
    return "; ".join(notes)


def _row_line(r: dict[str, Any]) -> str:
    mfu, mfu_best, mbu = _pct(r["mfu"]), _pct(r.get("mfu_best")), _pct(r.get("mbu"))
    return (f"{r['backend']:<18} {r['size']:<12} {r['workload']:<16} {r['status']:<10} "
            f"{_num(r['ms_median'], '10.2f')} {_num(r['ms_min'], '10.2f')} "
            f"{_num(r['tokens_per_s'], '10.0f')} {_num(r['gflops'], '8.1f')} {mfu:>6} "
            f"{mfu_best:>8} {_num(r.get('gbps'), '6.1f')} {mbu:>6} "
            f"{_num(r['peak_mem_mb'], '9.1f')}  {_notes(r)}")


BUSY_SHARE = 0.1  # other processes' CPU share above which a row and the header say so
HEADER = (f"{'backend':<18} {'size':<12} {'workload':<16} {'status':<10} {'ms median':>10} "
          f"{'ms min':>10} {'tokens/s':>10} {'GFLOP/s':>8} {'MFU':>6} {'MFU best':>8} "
          f"{'GB/s':>6} {'MBU':>6} {'peak MB':>9}  note")


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per measurement; a backend skipped everywhere collapses to one line."""
    lines = [HEADER, "-" * len(HEADER)]
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_backend.setdefault(r["backend"], []).append(r)
    collapsed = []
    for name, rs in by_backend.items():
        reasons = {r["reason"] for r in rs}
        if all(r["status"] == "skipped" for r in rs) and len(reasons) == 1:
            collapsed.append(f"{name:<18} skipped ({len(rs)} measurements): {reasons.pop()}")
    skip_all = {line.split()[0] for line in collapsed}
    lines += [_row_line(r) for r in rows if r["backend"] not in skip_all]
    return "\n".join(lines + collapsed)


def _find(rows: list[dict[str, Any]], backend: str, size: str, workload: str
          ) -> dict[str, Any] | None:
    for r in rows:
        if (r["backend"], r["size"], r["workload"], r["status"]) == (backend, size, workload,
                                                                     "ok"):
            return r
    return None


def _ratio_sizes(rows: list[dict[str, Any]]) -> list[str]:
    """The sizes whose numpy/torch time and memory ratios are targets: the named ones, every
    point of the T sweep (DESIGN.md: "at every T of the T sweep up to 2048"), GPT-2 at
    T=1024 (issue 16) and the Llama sizes (issue 25), in that order, those absent from `rows`
    answering nothing."""
    sweep_t = [r["size"] for r in rows if r.get("sweep") == "T"]
    return list(dict.fromkeys([*TARGET_SIZES, *sweep_t, "gpt2-124m-T1024", *LLAMA_TARGET_SIZES]))


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DESIGN.md's performance targets that this run's rows can answer, as ratios."""
    out = []
    for size in _ratio_sizes(rows):
        a, b = _find(rows, "numpy-f32", size, "train"), _find(rows, "torch-cpu", size, "train")
        if a and b:
            v = a["ms_median"] / b["ms_median"]
            out.append({"target": "numpy-f32 train step / torch-cpu eager train step",
                        "size": size, "value": v, "goal": "<= 1", "met": v <= 1.0,
                        "detail": f"median {a['ms_median']:.1f} / {b['ms_median']:.1f} ms; "
                                  f"min ratio {a['ms_min'] / b['ms_min']:.2f}"})
    a = _find(rows, "numpy-f32", "6L-384", "train")
    if a and a["mfu"] is not None:
        best = ""
        if a.get("mfu_best") is not None:
            best = (f"; {100 * a['mfu_best']:.1f}% of the machine's best float32 matmul, "
                    f"{a['best_peak_key']} {a['best_peak_gflops']:.1f} GFLOP/s")
        out.append({"target": "numpy-f32 train step MFU vs np.matmul float32 peak",
                    "size": "6L-384", "value": a["mfu"], "goal": ">= 0.75",
                    "met": a["mfu"] >= 0.75,
                    "detail": f"{a['gflops']:.1f} of {a['peak_gflops']:.1f} GFLOP/s{best}"})
    for size in _ratio_sizes(rows):
        a, b = _find(rows, "numpy-f32", size, "train"), _find(rows, "torch-cpu", size, "train")
        if a and b and a["peak_mem_mb"] and b["peak_mem_mb"]:
            v = a["peak_mem_mb"] / b["peak_mem_mb"]
            out.append({"target": "numpy-f32 peak mem / torch-cpu peak mem (train step)",
                        "size": size, "value": v, "goal": "<= 1", "met": v <= 1.0,
                        "detail": f"{a['peak_mem_mb']:.1f} / {b['peak_mem_mb']:.1f} MiB "
                                  "RSS growth"})
    for backend in ("numpy-f32", "torch-cpu"):  # issue 16: batched generation
        a, b = (_find(rows, backend, "6L-384", "generate-b16"),
                _find(rows, backend, "6L-384", "generate"))
        if a and b:
            v = a["tokens_per_s"] / b["tokens_per_s"]
            out.append({"target": f"{backend} generation tokens/s, B=16 / B=1",
                        "size": "6L-384", "value": v, "goal": ">= 8", "met": v >= 8.0,
                        "detail": f"{a['tokens_per_s']:.0f} / {b['tokens_per_s']:.0f} "
                                  "new tokens/s (greedy, KV cache)"})
    for backend in ("torch-cuda-bf16", "torch-cuda-compile"):
        a = _find(rows, backend, "gpt2-124m", "train")
        if a and a["mfu"] is not None:
            out.append({"target": f"{backend} train step MFU vs bf16 torch.mm peak",
                        "size": "gpt2-124m", "value": a["mfu"], "goal": ">= 0.50",
                        "met": a["mfu"] >= 0.5,
                        "detail": f"{a['gflops']:.0f} of {a['peak_gflops']:.0f} GFLOP/s"})
    return out


def format_targets(ts: list[dict[str, Any]], rows: list[dict[str, Any]] | None = None) -> str:
    """The targets as MET/MISS lines; with none, why, from the rows (what was measured
    against what the targets need: --quick's tiny size carries no target)."""
    if not ts:
        ok = [r for r in rows or [] if r["status"] == "ok"]
        measured = ""
        if ok:
            sizes = ", ".join(dict.fromkeys(r["size"] for r in ok))
            workloads = ", ".join(dict.fromkeys(r["workload"] for r in ok))
            measured = f" (measured: {workloads} at {sizes})"
        return (f"targets: none answerable from these rows{measured}: DESIGN.md's targets "
                f"compare numpy-f32 and torch-cpu train steps at {', '.join(TARGET_SIZES)}, "
                f"the T sweep points and {', '.join(LLAMA_TARGET_SIZES)}, and generate-b16 "
                "with generate at 6L-384; other sizes (--quick's tiny) carry none")
    lines = ["DESIGN.md targets (one run, same machine):"]
    for t in ts:
        mark = "MET " if t["met"] else "MISS"
        v = f"{100 * t['value']:.1f}%" if "MFU" in t["target"] else f"{t['value']:.2f}"
        lines.append(f"  {mark} {t['target']} at {t['size']}: {v} (goal {t['goal']}; "
                     f"{t['detail']})")
    return "\n".join(lines)


KV_DTYPES = {8: "float64", 4: "float32", 2: "bfloat16"}  # bytes per cached element


def kv_cache_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KV-cache bytes per generated token (bench/flops.py kv_cache_bytes_per_token) at every
    grouped-query size of `rows` (n_kv_head < n_head), once per element size its backends
    cache in (float32; bfloat16 under CUDA autocast), against the same model with
    n_kv_head = n_head. Counts, not timings: the same on every machine."""
    from .backends import BACKENDS
    from .flops import kv_cache_bytes_per_token
    from .sizes import get_size

    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        b = BACKENDS.get(r["backend"])
        if (b is None or r["status"] == "skipped" or not r.get("n_kv_head")
                or r["n_kv_head"] >= r["n_head"]):
            continue
        if (r["size"], b.kv_bytes) in out:
            out[r["size"], b.kv_bytes]["backends"].append(b.name)
            continue
        config = get_size(r["size"]).for_device(b.device).config
        gqa = kv_cache_bytes_per_token(config, b.kv_bytes)
        mha = kv_cache_bytes_per_token(config.replace(n_kv_head=None), b.kv_bytes)
        out[r["size"], b.kv_bytes] = {
            "size": r["size"], "dtype": KV_DTYPES[b.kv_bytes], "n_layer": config.n_layer,
            "n_head": config.n_head, "n_kv_head": config.kv_heads,
            "head_size": config.head_size, "bytes_per_token": gqa,
            "bytes_per_token_mha": mha, "ratio": gqa / mha, "T": r["T"],
            "backends": [b.name]}
    for entry in out.values():
        entry["backends"] = sorted(set(entry["backends"]))
    return list(out.values())


def format_kv_cache(table: list[dict[str, Any]]) -> str:
    """kv_cache_table as lines (empty when the run had no grouped-query size)."""
    if not table:
        return ""
    title = ("KV cache per generated token, 2 x n_layer x n_kv_head x head size x bytes (both "
             "twins' caches hold n_kv_head heads: tests/bench/test_llama.py):")
    header = (f"  {'size':<13} {'dtype':<9} {'q/kv heads':>10} {'KiB/token':>10} "
              f"{'if kv = q':>10} {'ratio':>6} {'T':>5} {'MiB at T':>9}  backends")
    lines = [title, header]
    for e in table:
        lines.append(f"  {e['size']:<13} {e['dtype']:<9} "
                     f"{str(e['n_head']) + '/' + str(e['n_kv_head']):>10} "
                     f"{e['bytes_per_token'] / 1024:10.1f} {e['bytes_per_token_mha'] / 1024:10.1f} "
                     f"{e['ratio']:6.3f} {e['T']:5d} {e['bytes_per_token'] * e['T'] / 2**20:9.2f}  "
                     f"{', '.join(e['backends'])}")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_env(env: dict[str, Any], peaks: dict[str, Any]) -> str:
    """The header: machine, software, both BLAS libraries (and the forcing variables and the
    older-kernel note), how busy other processes kept the machine, the measured peaks."""
    gpu = env.get("gpu") or "none"
    machine = (f"machine  {env['cpu_model']}, {_plural(env['cpu_cores'], 'core')}; "
               f"{_plural(env['threads'], 'thread')} per measurement; GPU {gpu}; "
               f"load {env.get('loadavg_start')} -> {env.get('loadavg_end')} "
               f"(1-min max {env.get('loadavg_1m_max')}, the bench's own workers included)")
    software = (f"software python {env['python']}, numpy {env['numpy']}, "
                f"torch {env.get('torch')}, commit {env.get('git_commit')}")
    lines = [machine, software]
    for owner in ("numpy", "torch"):
        if env.get(f"{owner}_blas"):
            lines.append(f"blas     {owner}: {env[f'{owner}_blas']}")
    if env.get("blas_env"):
        lines.append("blas     set in the environment: "
                     + " ".join(f"{k}={v}" for k, v in env["blas_env"].items()))
    lines += [f"NOTE     {note}" for note in env.get("blas_notes") or []]
    foreign = env.get("foreign_cpu_max")
    if foreign is not None:
        lines[0] += f"; other processes' CPU share max {100 * foreign:.0f}%"
    if (foreign or 0) > BUSY_SHARE:
        lines.append(f"WARNING  other processes used up to {100 * foreign:.0f}% of the "
                     f"machine's CPU time during one measurement (/proc/stat busy time minus "
                     f"the bench's own CPU time, over wall time x {env['cpu_cores']} cores): "
                     "timings are noisy (compare ms min; multi-threaded BLAS/OpenMP suffers "
                     "most)")
    for key, p in peaks.items():
        bandwidth = p.get("kind") == "bandwidth"
        label = "bandwidth" if bandwidth else "peak    "
        name = key.removesuffix("-bandwidth")
        if p.get("status") != "ok":
            lines.append(f"{label} {name}: {p.get('status')} {p.get('reason', '')}")
        elif bandwidth:
            cache = p.get("cache_bytes")
            llc = f"; last-level cache {cache / 2**20:.0f} MiB" if cache else ""
            lines.append(f"{label} {name}: {p['gbps']:.1f} GB/s ({p['best_kernel']}; "
                         f"{p['op']}, {p['bytes'] / 2**20:.0f} MiB arrays, best of "
                         f"{p['reps']}, spread {100 * p.get('spread', 0):.0f}%{llc})")
        else:
            spread = (f", spread {100 * p['spread']:.0f}%" if p.get("spread") is not None
                      else "")
            lines.append(f"{label} {name}: {p['gflops']:.1f} GFLOP/s ({p['op']}, best of "
                         f"n={list(p['per_size_gflops'])}{spread})")
    if any(p.get("quick") for p in peaks.values()):
        lines.append(f"NOTE     --quick measures less: matmul peaks at n=512 and bandwidths "
                     f"on 64 MiB arrays, few repeats, {_plural(env['threads'], 'thread')}: not "
                     "this machine's peaks (and timings of tiny sizes mean nothing)")
    return "\n".join(lines)


def _finite(x: Any) -> Any:
    """NaN and infinities (e.g. a check error on NaN logits) as null: strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def to_json(env: dict[str, Any], rows: list[dict[str, Any]], peaks: dict[str, Any]
            ) -> dict[str, Any]:
    return _finite({"env": env, "peaks": peaks, "targets": targets(rows), "rows": rows,
                    "kv_cache": kv_cache_table(rows)})


def write_json(path: str | Path, env: dict[str, Any], rows: list[dict[str, Any]],
               peaks: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_json(env, rows, peaks), indent=1, allow_nan=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The ok rows as a Markdown table (for README sections and results files), and the
    impossible ones with their figures withheld ("impossible" in their place)."""
    header = ("| backend | size | workload | ms median | ms min | tokens/s | GFLOP/s | MFU | "
              "MFU best | GB/s | MBU | peak MiB |")
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] not in ("ok", "impossible"):
            continue
        gflops = "impossible" if r.get("claimed_gflops") is not None else _num(r["gflops"],
                                                                                 ".1f")
        gbps = "impossible" if r.get("claimed_gbps") is not None else _num(r.get("gbps"),
                                                                             ".1f")
        lines.append(f"| {r['backend']} | {r['size']} | {r['workload']} | "
                     f"{r['ms_median']:.2f} | {r['ms_min']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{gflops} | {_pct(r['mfu'])} | {_pct(r.get('mfu_best'))} | {gbps} | "
                     f"{_pct(r.get('mbu'))} | {_num(r['peak_mem_mb'], '.1f')} |")
    return "\n".join(lines)
