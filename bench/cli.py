"""`python -m bench`: time numpy_gpt and torch_gpt, check them first, report ratios.

    python -m bench --quick                                    # seconds: validates the harness
    python -m bench --backends numpy-f32 torch-cpu --sizes baby --workloads train
    python -m bench --sizes none --sweep n_embd T --png sweep.png
    python -m bench --sweep all --save-results                 # the full run for this machine

Exit status: 0 when every measurement was ok or skipped, 1 when any was "failed" (the B1
correctness check disagreed), "error" or "impossible" (above the peak or bandwidth measured
in the same run: bench/roofline.py), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from .backends import BACKENDS, select_backends
from .env import cpu_cores, env_info, loadavg
from .flops import WORKLOADS
from .report import (
    format_env,
    format_kv_cache,
    format_table,
    format_targets,
    kv_cache_table,
    markdown_table,
    targets,
    write_json,
)
from .runner import Options, plan, run
from .sizes import DEFAULT_SIZES, SIZES, SWEEPS, get_size, sweep_sizes

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _names(values: list[str] | None) -> list[str] | None:
    """["a,b", "c"] -> ["a", "b", "c"] (lists may be given with commas or spaces)."""
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench", allow_abbrev=False,
                description="Benchmark numpy_gpt and torch_gpt: each measurement in a fresh "
                            "process, checked against the float64 reference before timing.")
    p.add_argument("--backends", nargs="+", metavar="NAME",
                   help=f"backends to run (default: all; unavailable ones are reported as "
                        f"skipped with the reason): {', '.join(BACKENDS)}")
    p.add_argument("--workloads", nargs="+", metavar="NAME",
                   help=f"workloads (default: all): {', '.join(WORKLOADS)}")
    p.add_argument("--sizes", nargs="+", metavar="NAME",
                   help=f"named sizes (default: {', '.join(DEFAULT_SIZES)}; with --quick: tiny; "
                        f"'none' for sweeps only): {', '.join(SIZES)}")
    p.add_argument("--sweep", nargs="+", default=["none"], metavar="{none,n_embd,T,all}",
                   help="also sweep n_embd (64..512 at 4L/4H, T=64, B=8) and/or T (32..512 "
                        "at 4L/4H/128d, B=8) to show how cost grows (default: none)")
    p.add_argument("--sweep-workloads", nargs="+", default=["train"], metavar="NAME",
                   help="workloads measured at sweep points (default: train)")
    p.add_argument("--iters", type=int, metavar="N",
                   help="timed iterations per measurement (default: per size, 2 to 20)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="untimed warm-up iterations (default: per size, 1 to 3)")
    p.add_argument("--threads", type=int, metavar="N", default=None,
                   help="CPU threads for torch (set_num_threads) and the BLAS "
                        "(OMP/OPENBLAS/MKL_NUM_THREADS in each worker's environment) "
                        "(default: all cores of this process's affinity mask; 1 with --quick)")
    p.add_argument("--json", metavar="PATH",
                   help='write {"env", "peaks", "targets", "rows"} at the end; while the run '
                        "goes on, each finished row is appended to PATH.partial.jsonl (kept "
                        "if the run is killed, removed when PATH is written)")
    p.add_argument("--png", metavar="PATH", help="write the charts (sweeps, MFU bars)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, 1 warm-up + 2 timed iterations, 1 thread, no "
                        "torch.compile: validates the harness in seconds (timings mean "
                        "nothing)")
    p.add_argument("--save-results", action="store_true",
                   help="write bench/results/<machine-id>.{json,md,png} (machine id from the "
                        "CPU model, cores and GPU name, plus the BLAS kernel when "
                        "OPENBLAS_CORETYPE forces it)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the B1 correctness check against the float64 reference")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                   help="kill a measurement after S seconds (default 1800)")
    p.add_argument("--isolate", action="store_true",
                   help="one process per (backend, size, workload) instead of per "
                        "(backend, size): stricter, slower")
    p.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="run the whole plan K times, interleaved, every measurement in a new "
                        "process; rows pool them (median of per-process medians, min of all). "
                        "Use on a shared machine, where one process can land in a slow "
                        "minute (default 1)")
    p.add_argument("--plant-fault", metavar="BACKEND",
                   help="for tests: give BACKEND a wrong model (ln_f gains x 1.5) so that its "
                        "B1 check must fail")
    return p


def _resolve(args: argparse.Namespace, p: argparse.ArgumentParser):
    try:
        backends = select_backends(_names(args.backends))
    except ValueError as e:
        p.error(str(e))
    workloads = _names(args.workloads) or list(WORKLOADS)
    sweep_workloads = _names(args.sweep_workloads)
    for w in workloads + sweep_workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; choose from {list(WORKLOADS)}")
    size_names = _names(args.sizes) or (["tiny"] if args.quick else list(DEFAULT_SIZES))
    if size_names == ["none"]:
        size_names = []
    try:
        sizes = [get_size(n, args.quick) for n in size_names]
    except ValueError as e:
        p.error(str(e))
    sweeps = _names(args.sweep)
    bad = [s for s in sweeps if s not in (*SWEEPS, "none", "all")]
    if bad:
        p.error(f"unknown sweep {bad}; choose from none, n_embd, T, all")
    sweeps = list(SWEEPS) if "all" in sweeps else [s for s in sweeps if s != "none"]
    points = [s for sweep in sweeps for s in sweep_sizes(sweep, args.quick)]
    if not sizes and not points:
        p.error("nothing to measure: --sizes none without --sweep")
    for flag in ("iters", "warmup", "threads", "repeat"):
        v = getattr(args, flag)
        if v is not None and v < (0 if flag == "warmup" else 1):
            p.error(f"--{flag} must be >= {0 if flag == 'warmup' else 1}, got {v}")
    if args.plant_fault and args.plant_fault not in BACKENDS:
        p.error(f"--plant-fault: unknown backend {args.plant_fault!r}")
    return backends, workloads, sizes, points, sweep_workloads


BAD_STATUSES = ("failed", "error", "impossible")


def partial_path(json_path: str | Path) -> Path:
    """Where `--json PATH` keeps the rows finished so far: a run killed by a time limit
    (bench/gpu_check.py's steps) still leaves them."""
    return Path(f"{json_path}.partial.jsonl")


def _append_partial(json_path: str | None, row: dict) -> None:
    if json_path is None:
        return
    path = partial_path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")


def exit_status(rows: list[dict]) -> int:
    """1 when any row failed its check, raised, or is impossible; else 0."""
    return 1 if any(r["status"] in BAD_STATUSES for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    backends, workloads, sizes, points, sweep_workloads = _resolve(args, p)
    threads = args.threads or (1 if args.quick else cpu_cores())
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    env = env_info(threads, command)
    jobs = plan(backends, sizes, workloads, points, sweep_workloads)

    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="bench", unit="job", file=sys.stderr, disable=None)

    def on_start(what: str) -> None:
        if bar.disable:  # not a terminal (a log file): one line per worker instead
            print(f"bench: {what}", file=sys.stderr, flush=True)
        else:
            bar.set_postfix_str(what, refresh=True)

    opts = Options(threads=threads, quick=args.quick, check=not args.no_check, seed=args.seed,
                   iters=args.iters, warmup=args.warmup, fault=args.plant_fault,
                   isolate=args.isolate, repeat=args.repeat, timeout_s=args.timeout,
                   on_row=lambda row: (bar.update(1), _append_partial(args.json, row)),
                   on_start=on_start)
    rows, peaks = run(jobs, opts)
    bar.close()
    env["loadavg_end"] = loadavg()
    loads = [r["loadavg_1m"] for r in rows if r.get("loadavg_1m") is not None]
    env["loadavg_1m_max"] = max(loads) if loads else None
    foreign = [r["foreign_cpu"] for r in rows if r.get("foreign_cpu") is not None]
    env["foreign_cpu_max"] = max(foreign) if foreign else None

    print(format_env(env, peaks))
    print()
    print(format_table(rows))
    print()
    print(format_targets(targets(rows), rows))
    kv_cache = format_kv_cache(kv_cache_table(rows))  # grouped-query sizes only
    if kv_cache:
        print()
        print(kv_cache)
    impossible = [r for r in rows if r["status"] == "impossible"]
    if impossible:
        print(f"\n{len(impossible)} impossible row(s): faster than this run measured the "
              "machine can go, so a FLOP or byte count is wrong (see their notes)")
    outputs = []
    if args.json:
        write_json(args.json, env, rows, peaks)
        partial_path(args.json).unlink(missing_ok=True)
        outputs.append(args.json)
    if args.png:
        from .plot import plot

        if plot(rows, args.png):
            outputs.append(args.png)
    if args.save_results:
        base = RESULTS_DIR / env["machine_id"]
        write_json(base.with_suffix(".json"), env, rows, peaks)
        kv_md = f"\n{kv_cache}\n" if kv_cache else ""
        md = (f"# bench results: {env['machine_id']}\n\n```\n{format_env(env, peaks)}\n```\n\n"
              f"{markdown_table(rows)}\n\n```\n{format_targets(targets(rows), rows)}\n"
              f"{kv_md}```\n")
        base.with_suffix(".md").write_text(md, encoding="utf-8")
        outputs += [str(base.with_suffix(".json")), str(base.with_suffix(".md"))]
        from .plot import plot

        if plot(rows, base.with_suffix(".png")):
            outputs.append(str(base.with_suffix(".png")))
    if outputs:
        print("\nwrote " + ", ".join(outputs))
    return exit_status(rows)
