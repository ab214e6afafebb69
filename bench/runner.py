"""The driver: plan the measurements, run them in worker processes, check, collect rows.

    rows, peaks = run(plan(backends, sizes, workloads), Options(threads=2))

Each (backend, size) runs in one fresh `python -m bench.worker` process (`isolate=True`: one
per workload), with the thread count in its environment (OMP/OPENBLAS/MKL_NUM_THREADS are
read when the libraries load, i.e. before NumPy is imported there). The worker builds the
model, runs one forward on the exact benchmark inputs and hands its logits over; the runner
compares them and the loss with the numpy_gpt float64 reference (computed here, once per
size) using parity.harness.compare and the parity tolerance for the backend's precision
(STYLE.md B1), and only then lets the worker time. A disagreement marks the rows "failed"
and nothing is timed. A backend's MFU denominator (its matmul peak) is measured once per
run, at the end of that backend's first worker, with the same threads.

A backend's memory bandwidth (the MBU denominator of decoding rows) is measured likewise,
once per framework and device, by its first worker that runs a generation workload.

Row status: "ok", "skipped" (unavailable here, with the reason), "failed" (B1 check
disagreed), "error" (the worker raised, crashed or timed out; the reason says which) or
"impossible" (its FLOP/s or bytes/s exceed what this run measured the machine can do:
bench/roofline.py; the count is wrong, so the figure is withheld).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, unavailable_reason
from .env import ForeignCpu
from .flops import GEN_WORKLOADS, WORKLOADS, generation_counts, matmul_params, step_flops
from .roofline import add_best_peak_mfu, add_roofline, mark_impossible
from .sizes import Size, make_inputs
from .worker import PREFIX

ROOT = Path(__file__).resolve().parents[1]
GEN_MAX_ITERS, GEN_WARMUP = 3, 1  # a generation is many steps: fewer repeats by default


@dataclass
class Options:
    threads: int
    quick: bool = False
    check: bool = True
    seed: int = 0
    iters: int | None = None  # None: the size's default
    warmup: int | None = None
    fault: str | None = None  # backend whose model gets a planted error (tests)
    isolate: bool = False  # one process per workload instead of per (backend, size)
    repeat: int = 1  # run the whole plan this many times, each measurement in a new process
    timeout_s: float = 1800.0
    on_row: Callable[[dict[str, Any]], None] | None = None
    on_start: Callable[[str], None] | None = None
    _refs: dict[tuple[str, str], tuple[np.ndarray, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    backend: Backend
    size: Size
    workload: str


def plan(backends: list[Backend], sizes: list[Size], workloads: list[str],
         sweep_points: list[Size] = (), sweep_workloads: list[str] = ()) -> list[Job]:
    """Named sizes x backends x workloads, then sweep points x backends x sweep workloads.

    Workloads run in WORKLOADS order within a (backend, size): forward, fwdbwd, train, then
    generation (train's AdamW steps change the weights, which generation does not mind)."""
    order = {w: i for i, w in enumerate(WORKLOADS)}
    jobs = [Job(b, s, w) for s in sizes for b in backends
            for w in sorted(workloads, key=order.get)]
    jobs += [Job(b, s, w) for s in sweep_points for b in backends
             for w in sorted(sweep_workloads, key=order.get)]
    return jobs


def generation_unavailable(backend: Backend) -> str | None:
    """Generation needs the twin's generate.py; torch_gpt's decodes with the eager model."""
    mod = ("numpy_gpt.generation.generate" if backend.framework in ("numpy", "cupy")
           else "torch_gpt.generate")
    if importlib.util.find_spec(mod) is None:
        return f"{mod.replace('.', '/')}.py does not exist yet (TODO: rerun when it lands)"
    if backend.compile:
        return "torch_gpt.generate decodes with the eager model (no compiled decode step)"
    return None


def skip_reason(job: Job, opts: Options) -> str | None:
    reason = unavailable_reason(job.backend, opts.quick)
    if reason is None and job.workload in GEN_WORKLOADS:
        reason = generation_unavailable(job.backend)
    return reason


def reference(size: Size, device: str, opts: Options) -> tuple[np.ndarray, float]:
    """numpy_gpt float64 logits and loss on the benchmark inputs (cached per size, device)."""
    from numpy_gpt.nn.model import GPT

    key = (size.name, device)
    if key not in opts._refs:
        opts._refs.clear()  # one size at a time: the gpt2-124m reference is ~100 MB
        sized = size.for_device(device)
        model = GPT(sized.config, dtype="float64", seed=opts.seed)
        idx, targets = make_inputs(sized, opts.seed)
        logits, loss, _ = model.forward(idx, targets)
        opts._refs[key] = (logits, float(loss))
    return opts._refs[key]


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def spawn(spec: dict[str, Any], opts: Options,
          on_check: Callable[[dict[str, Any]], bool] | None = None
          ) -> tuple[list[dict[str, Any]], str]:
    """Run one worker; returns (its messages, the tail of its stderr).

    `on_check(msg)` answers the worker's check message (True: go on and time)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec = {**spec, "tmpdir": tmp}
        stderr_path = Path(tmp) / "stderr.txt"
        messages: list[dict[str, Any]] = []
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.worker"], cwd=ROOT, env=_worker_env(opts.threads),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
            timer = threading.Timer(opts.timeout_s, proc.kill)
            timer.start()
            try:
                proc.stdin.write(json.dumps(spec) + "\n")
                proc.stdin.flush()
                for line in proc.stdout:
                    if not line.startswith(PREFIX):
                        continue
                    msg = json.loads(line[len(PREFIX):])
                    if msg["kind"] == "check":
                        go = on_check(msg) if on_check else True
                        proc.stdin.write("go\n" if go else "stop\n")
                        proc.stdin.flush()
                    else:
                        messages.append(msg)
            except BrokenPipeError:
                pass
            except BaseException:  # e.g. the comparison raised: do not leave the worker waiting
                proc.kill()
                raise
            finally:
                proc.wait()
                timer.cancel()
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
    if proc.returncode != 0:
        why = "killed after --timeout" if proc.returncode in (-9, 137) else \
            f"exited with status {proc.returncode}"
        tail = [f"worker {why}", *tail]
    return messages, " | ".join(tail)


def counts(size: Size, opts: Options, gen: bool) -> tuple[int, int]:
    """(warmup, iters): the flags, else the size's defaults (capped for generation)."""
    warmup = size.warmup if opts.warmup is None else opts.warmup
    iters = size.iters if opts.iters is None else opts.iters
    if gen:
        warmup = min(warmup, GEN_WARMUP) if opts.warmup is None else warmup
        iters = min(iters, GEN_MAX_ITERS) if opts.iters is None else iters
    return warmup, iters


def base_row(job: Job, opts: Options) -> dict[str, Any]:
    b, s = job.backend, job.size.for_device(job.backend.device)
    warmup, iters = counts(s, opts, job.workload in GEN_WORKLOADS)
    return {
        "backend": b.name, "workload": job.workload, "size": s.name, "status": "ok",
        "reason": "", "framework": b.framework, "device": b.device, "dtype": b.dtype,
        "precision": b.precision, "compiled": b.compile, **s.shape(),
        "sweep": s.sweep, "sweep_value": s.sweep_value, "threads": opts.threads,
        "warmup": warmup, "iters": iters, "n_params_flops": matmul_params(s.config),
        "flops_per_step": None, "ms_median": None, "ms_min": None, "ms_mean": None,
        "first_call_ms": None, "times_ms": None, "tokens_per_s": None, "gflops": None,
        "peak_gflops": None, "mfu": None, "peak_mem_mb": None,
        "mem_kind": "cuda" if b.device == "cuda" else "rss", "host_rss_peak_mb": None,
        "params_mb": None, "check": None, "loadavg_1m": None, "foreign_cpu": None,
        "steal_cpu": None, "blas": None,
        # decoding's memory roofline (generation workloads; bench/roofline.py)
        "bytes_per_step": None, "bytes_per_token": None, "working_set_bytes": None,
        "gbps": None, "bandwidth_key": None, "bandwidth_gbps": None, "mbu": None,
        "roofline_note": None,
    }


def _finish(row: dict[str, Any], job: Job, res: dict[str, Any]) -> None:
    """Fill a row from its worker result: timings, FLOPs, tokens/s, memory."""
    row["status"] = res.get("status", "error")
    row["reason"] = res.get("reason", "")
    for k in ("params_mb", "first_call_ms", "times_ms", "ms_median", "ms_min", "ms_mean",
              "host_rss_peak_mb", "mem_method", "warmup", "iters", "gen_batch", "prompt_len",
              "new_tokens", "blas"):
        if k in res:
            row[k] = res[k]
    if row["status"] != "ok":
        return
    s = job.size.for_device(job.backend.device)
    med_s = row["ms_median"] / 1e3
    if job.workload in GEN_WORKLOADS:
        # every workload but generate-nocache decodes with the KV cache (batched ones too)
        tokens = row["gen_batch"] * row["new_tokens"]
        gen = generation_counts(s.config, job.workload, row["gen_batch"], row["prompt_len"],
                                row["new_tokens"], job.backend.weight_bytes,
                                job.backend.kv_bytes)
        flops = gen["flops"]
        row["bytes_per_step"] = gen["bytes"]
        row["bytes_per_token"] = gen["bytes"] / tokens
        row["working_set_bytes"] = gen["working_set"]
    else:
        flops = step_flops(s.config, s.batch_size, s.seq_len, job.workload)
        tokens = s.batch_size * s.seq_len
    row["flops_per_step"] = flops
    row["tokens_per_s"] = tokens / med_s
    row["gflops"] = flops / med_s / 1e9
    cuda = job.backend.device == "cuda"
    row["peak_mem_mb"] = res.get("device_peak_mb") if cuda else res.get("host_rss_peak_mb")


def _run_unit(jobs: list[Job], rows: list[dict[str, Any]], peaks: dict[str, Any],
              opts: Options) -> None:
    """One worker for jobs of the same (backend, size); fills their rows in place."""
    b, size = jobs[0].backend, jobs[0].size
    s = size.for_device(b.device)
    check: dict[str, Any] = {}

    def on_check(msg: dict[str, Any]) -> bool:
        from parity.harness import compare
        from parity.tolerances import tolerance

        ref_logits, ref_loss = reference(size, b.device, opts)
        tol = tolerance(b.check_dtype, b.device, "forward")
        case = f"bench/{s.name}/{b.name}"
        rl = compare(case, "logits", np.load(msg["path"]), ref_logits, b.check_dtype,
                     b.device, tol)
        rs = compare(case, "loss", msg["loss"], ref_loss, b.check_dtype, b.device, tol)
        check.update(logits_error=rl.error, loss_error=rs.error, tol=tol,
                     tol_dtype=b.check_dtype, ok=rl.ok and rs.ok, note=rl.note or rs.note)
        return check["ok"]

    want_peak = b.peak_key not in peaks
    want_bandwidth = (b.bandwidth_key not in peaks
                      and any(j.workload in GEN_WORKLOADS for j in jobs))
    (warmup, iters), (gen_warmup, gen_iters) = counts(s, opts, False), counts(s, opts, True)
    spec = {"backend": b.name, "size": size.name, "workloads": [j.workload for j in jobs],
            "warmup": warmup, "iters": iters, "gen_warmup": gen_warmup, "gen_iters": gen_iters,
            "seed": opts.seed, "threads": opts.threads, "quick": opts.quick,
            "check": opts.check, "fault": opts.fault == b.name, "peak": want_peak,
            "bandwidth": want_bandwidth}
    if opts.on_start:
        opts.on_start(f"{b.name} {size.name} {','.join(spec['workloads'])}")
    usage = ForeignCpu()
    try:
        messages, tail = spawn(spec, opts, on_check)
    except Exception as e:  # noqa: BLE001 -- e.g. the float64 reference ran out of memory
        messages, tail = [], f"the parent failed: {type(e).__name__}: {e}"
    foreign, steal = usage.foreign()
    results = {m["workload"]: m for m in messages if m["kind"] == "result"}
    for m in messages:
        if m["kind"] == "peak":
            m.pop("kind")
            peaks[b.peak_key] = m
        elif m["kind"] == "bandwidth":  # kept with its kind: peaks holds both sorts
            peaks[b.bandwidth_key] = {**m, "device": b.device}
    for job, row in zip(jobs, rows):
        res = results.get(job.workload) or {"status": "error",
                                            "reason": f"no result from the worker: {tail}"}
        if res.get("status") == "error" and tail and tail not in res.get("reason", ""):
            res["reason"] = f"{res.get('reason', '')} [{tail}]"
        _finish(row, job, res)
        row["foreign_cpu"], row["steal_cpu"] = foreign, steal
        if check:
            row["check"] = dict(check)
            if not check["ok"]:
                row["status"] = "failed"
                row["reason"] = (f"B1 check failed: logits error {check['logits_error']:.2e}, "
                                 f"loss error {check['loss_error']:.2e} > tol "
                                 f"{check['tol']:.0e} ({check['tol_dtype']})")
        peak = peaks.get(b.peak_key)
        if row["status"] == "ok" and peak and peak.get("status") == "ok":
            row["peak_gflops"] = peak["gflops"]
            row["mfu"] = row["gflops"] / peak["gflops"]


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def merge_repeats(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same measurement repeated in several processes (--repeat).

    Timings pool: ms_median is the median of the per-process medians (one slow process, e.g.
    during a neighbour's burst, moves it less than pooling would), ms_min the min of all
    steps; memory and the CPU share of other processes take the worst process. A repeat that
    is not ok makes the row not ok, with that repeat's reason."""
    row = dict(reps[0])
    bad = [r for r in reps if r["status"] != "ok"]
    if bad:
        row.update({k: bad[0][k] for k in ("status", "reason", "check")})
        row.update(ms_median=None, ms_min=None, ms_mean=None, tokens_per_s=None, gflops=None,
                   mfu=None, peak_mem_mb=None, gbps=None, mbu=None)
        return row
    if len(reps) == 1:
        return row
    medians = [r["ms_median"] for r in reps]
    row["process_medians_ms"] = medians
    row["times_ms"] = [t for r in reps for t in r["times_ms"]]
    row["ms_median"] = statistics.median(medians)
    row["ms_min"] = min(r["ms_min"] for r in reps)
    row["ms_mean"] = statistics.fmean(row["times_ms"])
    scale = reps[0]["ms_median"] / row["ms_median"]  # rates scale inversely with time
    for k in ("tokens_per_s", "gflops", "mfu", "gbps", "mbu"):
        if row.get(k) is not None:
            row[k] *= scale
    for k in ("peak_mem_mb", "host_rss_peak_mb", "foreign_cpu", "steal_cpu", "loadavg_1m"):
        vals = [r[k] for r in reps if r.get(k) is not None]
        row[k] = max(vals) if vals else None
    return row


def run(jobs: list[Job], opts: Options) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every job, grouped into worker processes, the whole plan `opts.repeat` times in turn
    (interleaved, so every backend sees the machine's slow and fast minutes alike); returns
    (rows in job order, matmul peaks by backend peak_key)."""
    peaks: dict[str, Any] = {}
    reps: list[list[dict[str, Any]]] = [[] for _ in jobs]
    units: dict[tuple[str, str, int], list[int]] = {}
    skipped: dict[int, str] = {}
    for i, job in enumerate(jobs):
        reason = skip_reason(job, opts)
        if reason is not None:
            skipped[i] = reason
            continue
        key = (job.backend.name, job.size.name, i if opts.isolate else -1)
        units.setdefault(key, []).append(i)
    for rep in range(opts.repeat):
        for i, reason in skipped.items():
            if rep == 0:
                row = base_row(jobs[i], opts)
                row.update(status="skipped", reason=reason)
                reps[i].append(row)
                if opts.on_row:
                    opts.on_row(row)
        for idxs in units.values():
            rows = [base_row(jobs[i], opts) for i in idxs]
            load = _load1()
            for row in rows:
                row["loadavg_1m"] = load  # the machine is shared: how busy it was
            _run_unit([jobs[i] for i in idxs], rows, peaks, opts)
            for i, row in zip(idxs, rows):
                reps[i].append(row)
                if opts.on_row and rep == opts.repeat - 1:
                    opts.on_row(row)
    out = [merge_repeats(r) for r in reps]
    for row in out:
        row["repeat"] = opts.repeat
    add_best_peak_mfu(out, peaks)
    add_roofline(out, peaks)
    mark_impossible(out, peaks)
    return out, peaks
