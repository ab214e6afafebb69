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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 480  # DESIGN.md: the whole check within 8 minutes on one H200
FINISH_S = 15  # kept back from the budget for merging the results and the chart
MIN_STEP_S = 20  # a step is not started with less time than this left


@dataclass(frozen=True)
class Step:
    name: str
    what: str  # one line for --list and the summary
    limit_s: int  # this step's own limit on the GPU (the dry run uses the same)
    argv: Callable[[Path, bool], list[str]]  # (scratch folder, dry run) -> the command


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _bench(name: str, backends: list[str], sizes: list[str], dry_sizes: list[str],
           workloads: list[str], *extra: str) -> Callable[[Path, bool], list[str]]:
    """A bench step: on the GPU the CUDA backends at `sizes`; in the dry run the same backends
    (the torch CUDA ones are then reported skipped, cupy-f32 runs on the fake CuPy) plus the
    CPU ones, at tiny `dry_sizes` with --quick."""
    def argv(tmp: Path, dry: bool) -> list[str]:
        b = ["numpy-f32", "torch-cpu", *backends] if dry else backends
        cmd = _py("-m", "bench", "--backends", *b, "--sizes", *(dry_sizes if dry else sizes),
                  "--workloads", *workloads, "--json", str(tmp / f"{name}.json"), *extra)
        return cmd + (["--quick"] if dry else ["--timeout", "240"])
    return argv


CUDA_TRAIN = ["torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-bf16", "cupy-f32"]


def _cuda_test_files() -> list[str]:
    """The test files holding tests marked cuda (pytest -m cuda then runs just those)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


STEPS: list[Step] = [
    Step("machine", "GPU, driver, versions, matmul peaks (fp32, TF32, bf16, CuPy f32), "
         "memory bandwidth (copy and read)", 45,
         lambda tmp, dry: _py("-m", "bench.gpu_check", "--probe", str(tmp / "machine.json"),
                              *(["--dry-run"] if dry else []))),
    Step("parity", "python -m parity --device cuda --dtype all (+ the cupy:<case> rows)", 90,
         lambda tmp, dry: _py("-m", "parity", "--device", "cpu" if dry else "cuda",
                              "--dtype", "float64" if dry else "all",
                              "--json", str(tmp / "parity.json"),
                              *(["--case", "model/*"] if dry else []))),
    Step("parity-hf", "python -m parity --twin hf --device cuda (transformers' GPT-2)", 45,
         lambda tmp, dry: _py("-m", "parity", "--twin", "hf", "--device",
                              "cpu" if dry else "cuda", "--json", str(tmp / "parity-hf.json"))),
    Step("pytest", "the tests marked cuda (skipped without a GPU)", 75,
         lambda tmp, dry: _py("-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                              *_cuda_test_files())),
    Step("bench-gpt2-b16", "train step, GPT-2 124M at B=16, T=1024, with bf16 compiled "
         "(no float64 check: bench-gpt2 checks the same code at B=4)", 140,
         _bench("bench-gpt2-b16", ["torch-cuda-fp32", "torch-cuda-bf16", "torch-cuda-compile",
                                   "cupy-f32"], ["gpt2-124m-B16"], ["tiny"], ["train"],
                "--no-check")),
    Step("bench-long-t", "T sweep 2048..8192 at 4L/128d, B=1: CuPy tiled attention vs "
         "torch SDPA, time and memory", 110,
         _bench("bench-long-t", ["torch-cuda-fp32", "torch-cuda-bf16", "cupy-f32"],
                ["TL2048", "TL4096", "TL8192"], ["TL8", "TL16"], ["train"])),
    Step("bench-generate", "KV-cache greedy decoding, GPT-2 124M, B=1 and B=16", 110,
         _bench("bench-generate", ["torch-cuda-fp32", "torch-cuda-bf16", "cupy-f32"],
                ["gpt2-124m"], ["tiny"], ["generate", "generate-b16"], "--iters", "1",
                "--warmup", "1")),
    Step("bench-gpt2", "train step, GPT-2 124M at B=4, T=1024 (checked against float64)", 150,
         _bench("bench-gpt2", CUDA_TRAIN, ["gpt2-124m"], ["tiny"], ["train"])),
    Step("bench-small", "train step at baby and 6L-384", 90,
         _bench("bench-small", CUDA_TRAIN, ["baby", "6L-384"], ["tiny"], ["train"])),
]


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
        summary = _collect(tmp, out, results, dry)
        summary["seconds"] = round(time.perf_counter() - t_start, 1)
        summary["budget_s"] = budget_s
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n",
                                          encoding="utf-8")
        _tee(log, "\n" + format_summary(summary) + "\n")
    return summary


def _collect(tmp: Path, out: Path, results: list[dict[str, Any]], dry: bool) -> dict[str, Any]:
    """Merge the bench steps' JSON into one results file set; copy the parity JSON."""
    from .report import format_env, format_targets, markdown_table, targets, write_json

    machine = _read(tmp / "machine.json")
    for name in ("parity.json", "parity-hf.json"):
        if (tmp / name).exists():
            shutil.copyfile(tmp / name, out / name)
    env, rows, peaks = None, [], {}
    for step in STEPS:
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


# ------------------------------------------------------------------------------ the probe


def probe(dry: bool) -> dict[str, Any]:
    """The machine: GPU, driver, versions, matmul peaks, memory bandwidth.

    Peaks reuse bench.peak (the same measurement MFU divides by); the dry run measures the
    CPU's torch.mm and the fake CuPy at n=512 instead, to prove the code path only."""
    from .backends import BACKENDS, unavailable_reason
    from .peak import matmul_peak

    info: dict[str, Any] = {"python": sys.version.split()[0]}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, ("--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                            "power.limit"), "--format=csv,noheader"],
                           check=False, capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    for mod in ("numpy", "torch", "cupy", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 -- recorded, the rows that need it skip
            info[mod] = f"unavailable: {type(e).__name__}: {e}"
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                           "memory_gib": round(p.total_memory / 2**30, 1),
                           "sms": p.multi_processor_count}
            info["cudnn"] = torch.backends.cudnn.version()
    except ImportError:
        pass
    peaks = {}
    names = (["torch-cpu", "cupy-f32"] if dry else
             ["torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-bf16", "cupy-f32"])
    for name in names:
        reason = unavailable_reason(BACKENDS[name])
        if reason:
            peaks[name] = {"skipped": reason}
            continue
        gflops, detail = matmul_peak(BACKENDS[name], quick=dry)
        peaks[name] = {"gflops": round(gflops, 1), **detail}
    info["matmul_peaks"] = peaks
    info["memory_bandwidth"] = device_bandwidth(dry)
    return info


def device_bandwidth(dry: bool) -> dict[str, Any]:
    """The device's memory bandwidth as bench measures it for MBU (bench/bandwidth.py: a copy
    and a read of a 1 GiB buffer with torch on CUDA); the dry run: the CPU at --quick size."""
    from .backends import BACKENDS, unavailable_reason
    from .bandwidth import memory_bandwidth

    backend = BACKENDS["torch-cpu" if dry else "torch-cuda-fp32"]
    reason = unavailable_reason(backend)
    if reason:
        return {"skipped": reason}
    from .env import cpu_cores

    gbps, detail = memory_bandwidth(backend, threads=1 if dry else cpu_cores(), quick=dry)
    return {"gb_per_s": round(gbps, 1), **detail}


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
