"""`python -m bench.gpu_check OUT_DIR`: every GPU check and GPU figure, in one command.

    PYTHONPATH=. python -m bench.gpu_check out/gpu            # on the GPU machine, ~8 minutes
    PYTHONPATH=. python -m bench.gpu_check --dry-run out/dry  # the same steps on the CPU, tiny
    python -m bench.gpu_check --list                          # the steps and their time limits

A GPU is lent to this project by chance, for minutes, on a machine with no network: the
minutes must go to measuring, not debugging. So every step here is proven wired on the CPU
first (`--dry-run`, run by tests/bench/test_gpu_check.py) and the real run is this one
command, from a plain checkout with PYTHONPATH=. (nothing is installed there).

Each step is a command of the project's own (parity, pytest, bench) run in its own process
group with its own time limit, cut further so that the whole run stays inside `--budget`
seconds; a step that fails or runs out is recorded with its reason and the next one starts.
A missing package skips only the rows that need it (bench and parity say which). The steps,
in the order that matters most if time runs short:

    machine     GPU name, driver, versions; torch.mm fp32/TF32/bf16 and cupy.matmul peaks;
                the memory bandwidth (bench/bandwidth.py: copy and read)
    parity      python -m parity --device cuda --dtype all: torch CUDA float64/float32 (and
                bf16/fp16 autocast) against numpy_gpt float64, plus the cupy:<case> rows
    parity-hf   python -m parity --twin hf --device cuda (transformers' GPT-2 on the GPU)
    pytest      the tests marked cuda (they skip without a GPU)
    bench-*     GPT-2 124M train steps at B=16, T=1024 for torch fp32, bf16 and bf16
                compiled and numpy_gpt on CuPy; a T sweep 2048..8192 at B=1 (CuPy's tiled
                attention against torch's SDPA kernels, time and memory); KV-cache generation
                at gpt2-124m, B=1 and B=16; GPT-2 at B=4 checked against float64 (with TF32);
                baby and 6L-384 last

A bench step that runs out keeps the rows its bench finished (`--json`'s .partial.jsonl);
the log stamps each line of a step with the seconds since the step began. The first run
(an H200, 2026-12-04: README "On a GPU") took 13 s for the machine, 50 for parity, 14 for
parity-hf, 42 for pytest and 101 for the B=16 step; the order and limits follow from it.

OUT_DIR receives at most 8 files, each well under 16 MiB: `<machine>.json`, `.md`, `.png`
(the bench rows of every bench step merged, the format of bench/results/, so committing them
is a copy), `parity.json`, `parity-hf.json`, `summary.json` (the machine, each step's status,
time and reason, the DESIGN.md CUDA targets as MET/MISS) and `gpu_check.log` (everything
printed). Exit status 0 when every step passed, 1 otherwise (the files are written either way).

Here: the runner (each step in its own process group, the budget, the log) and the command
line. The steps are gpu_steps.py, what OUT_DIR receives and the targets' grading
gpu_results.py, the machine step gpu_probe.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from .gpu_probe import probe
from .gpu_results import collect, format_summary
from .gpu_steps import ROOT, STEPS, Step

DEFAULT_BUDGET_S = 480  # DESIGN.md: the whole check within 8 minutes on one H200
FINISH_S = 15  # kept back from the budget for merging the results and the chart
MIN_STEP_S = 20  # a step is not started with less time than this left


# ------------------------------------------------------------------------------ running


def _run_step(step: Step, cmd: list[str], limit_s: float, env: dict[str, str],
              log: IO[str]) -> dict[str, Any]:
    """Run one step in its own process group, its output to stdout and the log as it comes;
    kill the whole group (bench's workers too) at the limit."""
    header = f"\n=== {step.name}: {step.what}\n$ {' '.join(cmd)}  (limit {limit_s:.0f} s)\n"
    _tee(log, header)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    pump = threading.Thread(target=lambda: [_tee(log, line, time.perf_counter() - t0)
                                            for line in proc.stdout], daemon=True)
    pump.start()
    try:
        rc = proc.wait(timeout=limit_s)
        status = "ok" if rc == 0 else "failed"
        reason = None if rc == 0 else f"exit status {rc}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc, status, reason = None, "timeout", f"ran out of its {limit_s:.0f} s"
    pump.join(timeout=5)
    seconds = time.perf_counter() - t0
    _tee(log, f"=== {step.name}: {status} in {seconds:.1f} s"
              f"{'' if reason is None else ' (' + reason + ')'}\n")
    return {"name": step.name, "what": step.what, "status": status, "exit_status": rc,
            "seconds": round(seconds, 1), "limit_s": round(limit_s), "reason": reason,
            "command": cmd}


def _tee(log: IO[str], text: str, seconds: float | None = None) -> None:
    """`text` to stdout and the log; a step's lines go to the log with the seconds since the
    step started (where a step's time went, when it runs out)."""
    sys.stdout.write(text)
    sys.stdout.flush()
    log.write(text if seconds is None else f"[{seconds:6.1f}s] {text}")
    log.flush()


def _step_env(dry: bool, tmp: Path) -> dict[str, str]:
    """PYTHONPATH=. (a plain checkout); the dry run also loads tests/fake_cupy.py in every
    process (a sitecustomize in the scratch folder), so cupy-f32 runs numpy_gpt's device code
    on the CPU and bench's workers see it too."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(ROOT)]
    if dry:
        shim = tmp / "fake_cupy_site"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(
            "import sys\n"
            f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            "import fake_cupy\n"
            "sys.modules.update(fake_cupy._make_module()[1])\n", encoding="utf-8")
        paths.insert(0, str(shim))
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_checks(out: Path, dry: bool = False, budget_s: float = DEFAULT_BUDGET_S,
               only: list[str] | None = None) -> dict[str, Any]:
    """Run the steps into `out`; returns the summary (also written as summary.json)."""
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    steps = [s for s in STEPS if only is None or s.name in only]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp_name, \
            open(out / "gpu_check.log", "w", encoding="utf-8") as log:
        tmp = Path(tmp_name)
        env = _step_env(dry, tmp)
        _tee(log, f"gpu_check{' --dry-run' if dry else ''}: {len(steps)} steps, budget "
                  f"{budget_s:.0f} s, out {out}\n")
        for step in steps:
            left = budget_s - FINISH_S - (time.perf_counter() - t_start)
            if left < MIN_STEP_S:
                results.append({"name": step.name, "what": step.what, "status": "skipped",
                                "reason": f"budget spent ({left:.0f} s left of {budget_s:.0f})",
                                "seconds": 0.0, "limit_s": step.limit_s})
                _tee(log, f"\n=== {step.name}: skipped, budget spent\n")
                continue
            results.append(_run_step(step, step.argv(tmp, dry), min(step.limit_s, left), env,
                                     log))
        summary = collect(tmp, out, results, dry, STEPS)
        summary["seconds"] = round(time.perf_counter() - t_start, 1)
        summary["budget_s"] = budget_s
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n",
                                          encoding="utf-8")
        _tee(log, "\n" + format_summary(summary) + "\n")
    return summary


# ------------------------------------------------------------------------------ command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m bench.gpu_check", allow_abbrev=False,
                description="Every GPU check and GPU figure of the project in one command "
                            "(see the module docstring and README 'On a GPU').")
    p.add_argument("out", nargs="?", metavar="OUT_DIR", help="folder for the result files")
    p.add_argument("--dry-run", action="store_true",
                   help="the same steps on the CPU, tiny sizes, the fake CuPy: proves the "
                        "wiring before a GPU minute is spent")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                   help=f"seconds for the whole run (default {DEFAULT_BUDGET_S}); each step "
                        "is cut to what is left")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    p.add_argument("--list", action="store_true", help="list the steps and exit")
    p.add_argument("--probe", metavar="JSON", help=argparse.SUPPRESS)  # the machine step
    args = p.parse_args(argv)
    if args.probe:
        text = json.dumps(probe(args.dry_run), indent=1)
        Path(args.probe).write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0
    if args.list:
        for s in STEPS:
            print(f"{s.name:15} {s.limit_s:4d} s  {s.what}")
        return 0
    if not args.out:
        p.error("give OUT_DIR, the folder for the result files (or --list)")
    unknown = sorted(set(args.only or []) - {s.name for s in STEPS})
    if unknown:
        p.error(f"--only: unknown step(s) {unknown}; see --list")
    if args.budget < MIN_STEP_S + FINISH_S:
        p.error(f"--budget must be >= {MIN_STEP_S + FINISH_S} s, got {args.budget:g}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"{out} is not empty; give a new or empty folder (results are never "
                "overwritten)")
    summary = run_checks(out, dry=args.dry_run, budget_s=args.budget, only=args.only)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
