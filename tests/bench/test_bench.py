"""bench: the --quick run and its JSON schema, skips with reasons, the B1 check catching a
planted wrong model, and the pieces (timing, memory, report). FLOP and byte counts are in
test_flops.py, the roofline, the impossibility guard and the BLAS header in test_roofline.py.

No timing assertions: the machine is shared; only shapes, types and statuses are checked.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import fake_cupy
import numpy as np
import pytest

from bench import cli, report
from bench.backends import BACKENDS, unavailable_reason
from bench.flops import GEN_WORKLOADS, WORKLOADS
from bench.memory import PeakTracker
from bench.numpy_adapter import NumpyAdapter
from bench.profile import KINDS, classify, profile_train_step
from bench.sizes import SIZES, get_size, sweep_sizes
from bench.timing import time_steps

ROOT = Path(__file__).resolve().parents[2]

REQUIRED = {  # DESIGN.md "bench --json": at least these, with these types
    "backend": str, "workload": str, "size": str, "status": str, "reason": str,
    "ms_median": (float, type(None)), "ms_min": (float, type(None)),
    "tokens_per_s": (float, type(None)), "gflops": (float, type(None)),
    "mfu": (float, type(None)), "peak_mem_mb": (float, int, type(None)),
}
NUMBERS = ("ms_median", "ms_min", "tokens_per_s", "gflops", "mfu", "peak_mem_mb")


def run_bench(*args, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "--json", str(out)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.exists(), proc.stderr[-2000:]
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    png = tmp / "bench.png"
    proc, data = run_bench("--quick", "--png", str(png), tmp_path=tmp)
    return proc, data, png


# ---------------------------------------------------------------------- the --quick run


def test_quick_run_writes_valid_json_table_and_png(quick):
    proc, data, png = quick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(data) >= {"env", "rows"}
    for key in ("cpu_model", "cpu_cores", "threads", "numpy", "numpy_blas", "torch",
                "machine_id", "loadavg_start"):
        assert key in data["env"], key
    rows = data["rows"]
    assert rows
    for r in rows:
        for key, types in REQUIRED.items():
            assert isinstance(r[key], types), (key, r[key])
        assert r["status"] in ("ok", "skipped", "failed", "error")
        if r["status"] == "ok":
            for key in NUMBERS:
                assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] >= 0, key
            assert r["ms_min"] <= r["ms_median"]
            assert r["check"]["ok"] and r["check"]["logits_error"] <= r["check"]["tol"]
        else:
            assert r["reason"], r
            assert r["ms_median"] is None
    ok = {(r["backend"], r["workload"]) for r in rows if r["status"] == "ok"}
    for backend in ("numpy-f32", "numpy-f64", "torch-cpu"):
        for workload in WORKLOADS:  # every workload, generation included
            assert (backend, workload) in ok
    assert "backend" in proc.stdout and "numpy-f32" in proc.stdout  # the console table
    assert png.exists() and png.stat().st_size > 1000


def test_quick_run_has_no_impossible_row_and_a_memory_roofline(quick):
    """Issue 27: every workload's counted FLOP/s stays under the matmul peak measured in the
    same run (no row "impossible"); decoding rows carry GB/s against a bandwidth measured
    in the same run (their MBU is null: --quick's tiny model sits in the cache, and says so)."""
    proc, data, _ = quick
    rows = data["rows"]
    assert not [r for r in rows if r["status"] == "impossible"], proc.stdout[-3000:]
    assert "impossible" not in proc.stdout
    bandwidths = {k: p for k, p in data["peaks"].items() if p.get("kind") == "bandwidth"}
    assert {"numpy-cpu-bandwidth", "torch-cpu-bandwidth"} <= set(bandwidths)
    for p in bandwidths.values():
        assert p["status"] == "ok" and p["gbps"] > 0 and p["device"] == "cpu", p
    for r in rows:
        if r["status"] != "ok":
            continue
        assert r["mfu_best"] <= 1.0, r
        if r["workload"] in GEN_WORKLOADS:
            assert r["gbps"] > 0 and r["bytes_per_token"] > 0, r
            assert r["bandwidth_key"] in bandwidths
            assert r["mbu"] is None and r["roofline_note"].startswith("in cache"), r
        else:
            assert r["gbps"] is None and r["mbu"] is None
        assert r["blas"] and ("OpenBLAS" in r["blas"] or r["framework"] == "torch"), r


def test_quick_header_names_blas_threads_and_what_quick_measures(quick):
    """Issue 26 (the BLAS in every figure) and issue 28's rough edge 11."""
    proc, data, _ = quick
    env, out = data["env"], proc.stdout
    assert env["numpy_blas_info"]["library"] and env["numpy_blas"] in out
    assert "blas     numpy: " in out and "blas     torch: " in out
    assert "1 thread per measurement" in out and "1 threads" not in out
    assert "--quick measures less" in out
    assert "targets: none answerable from these rows (measured: forward, fwdbwd, train, " in out
    assert "at tiny): DESIGN.md's targets compare" in out and "tiny) carry none" in out
    if not env["blas_env"]:  # this machine's environment forces no kernel
        assert env["blas_kernel_tag"] is None and "openblas" not in env["machine_id"]


def test_unavailable_backends_are_skipped_with_a_reason(quick):
    _, data, _ = quick
    rows = {(r["backend"], r["workload"]): r for r in data["rows"]}
    assert {b for b, _ in rows} == set(BACKENDS)  # every backend has a row, run or not
    cupy = rows["cupy-f32", "train"]
    assert cupy["status"] == "skipped"
    try:
        import cupy
    except ImportError:
        assert cupy["reason"] == "cupy not installed (pip install cupy-cuda12x)"
    import torch

    if not torch.cuda.is_available():
        for name in ("torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-bf16",
                     "torch-cuda-compile"):
            r = rows[name, "train"]
            assert r["status"] == "skipped" and "CUDA" in r["reason"], r
    assert rows["torch-cpu-compile", "train"]["status"] == "skipped"  # not with --quick
    assert "--quick" in rows["torch-cpu-compile", "train"]["reason"]


def test_planted_wrong_model_fails_the_check_and_is_not_timed(tmp_path):
    proc, data = run_bench("--quick", "--backends", "numpy-f32", "numpy-f64", "--workloads",
                           "forward", "train", "--plant-fault", "numpy-f32", tmp_path=tmp_path)
    assert proc.returncode == 1  # a failed row fails the run
    rows = {(r["backend"], r["workload"]): r for r in data["rows"]}
    good, bad = rows["numpy-f64", "train"], rows["numpy-f32", "train"]
    assert rows["numpy-f32", "forward"]["status"] == "failed"
    assert good["status"] == "ok" and good["check"]["ok"]
    assert bad["status"] == "failed" and "B1 check failed" in bad["reason"]
    assert not bad["check"]["ok"] and bad["check"]["logits_error"] > bad["check"]["tol"]
    assert bad["ms_median"] is None and bad["tokens_per_s"] is None


def test_repeat_pools_fresh_processes(tmp_path):
    proc, data = run_bench("--quick", "--backends", "numpy-f32", "--workloads", "train",
                           "--repeat", "2", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = [r for r in data["rows"] if r["status"] == "ok"]
    assert row["repeat"] == 2 and len(row["process_medians_ms"]) == 2
    assert len(row["times_ms"]) == 2 * row["iters"]


def test_merge_repeats():
    from bench.runner import merge_repeats

    def rep(med, mn, mem, status="ok"):
        return {"status": status, "reason": "" if status == "ok" else "no", "check": None,
                "ms_median": med, "ms_min": mn, "ms_mean": med, "times_ms": [mn, med, med],
                "tokens_per_s": 1000 / med, "gflops": 10 / med, "mfu": 0.1 / med,
                "peak_mem_mb": mem, "host_rss_peak_mb": mem, "foreign_cpu": 0.0,
                "steal_cpu": 0.0, "loadavg_1m": 0.5}

    row = merge_repeats([rep(10.0, 9.0, 5.0), rep(30.0, 20.0, 7.0), rep(12.0, 11.0, 6.0)])
    assert row["ms_median"] == 12.0 and row["ms_min"] == 9.0 and row["peak_mem_mb"] == 7.0
    assert row["tokens_per_s"] == pytest.approx(1000 / 12) and len(row["times_ms"]) == 9
    bad = merge_repeats([rep(10.0, 9.0, 5.0), rep(1.0, 1.0, 1.0, status="error")])
    assert bad["status"] == "error" and bad["ms_median"] is None


def test_mfu_best_divides_by_the_fastest_matmul_of_the_same_device_and_precision():
    """numpy-f32's MFU against its own np.matmul and against the machine's best float32 matmul
    (torch.mm here); a float64 row only has float64 peaks to compare with."""
    from bench.runner import add_best_peak_mfu

    peaks = {"numpy-cpu-float32": {"status": "ok", "gflops": 300.0},
             "torch-cpu-float32": {"status": "ok", "gflops": 400.0},
             "numpy-cpu-float64": {"status": "ok", "gflops": 150.0},
             "torch-cuda-float32": {"status": "ok", "gflops": 9000.0}}
    rows = [{"status": "ok", "gflops": 200.0, "device": "cpu", "precision": "float32"},
            {"status": "ok", "gflops": 100.0, "device": "cpu", "precision": "float64"},
            {"status": "skipped", "gflops": None, "device": "cpu", "precision": "float32"}]
    add_best_peak_mfu(rows, peaks)
    assert rows[0]["best_peak_key"] == "torch-cpu-float32"
    assert rows[0]["mfu_best"] == pytest.approx(0.5)
    assert rows[1]["best_peak_key"] == "numpy-cpu-float64"
    assert rows[1]["mfu_best"] == pytest.approx(100 / 150)
    assert rows[2]["mfu_best"] is None
    line = report.format_table([{**rows[0], "backend": "numpy-f32", "size": "baby",
                                 "workload": "train", "reason": "", "ms_median": 1.0,
                                 "ms_min": 1.0, "tokens_per_s": 1.0, "mfu": 0.6,
                                 "peak_mem_mb": 1.0, "compiled": False}])
    assert "60.0%    50.0%" in line


def test_bad_flags_exit_2(capsys):
    for argv in (["--backends", "nope"], ["--workloads", "nope"], ["--sizes", "nope"],
                 ["--sweep", "nope"], ["--iters", "0"], ["--sizes", "none"],
                 ["--repeat", "0"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2, argv
        assert "error" in capsys.readouterr().err


# FLOP and byte counts: tests/bench/test_flops.py


# ---------------------------------------------------------------------- pieces


def test_sizes():
    g = SIZES["gpt2-124m"]
    assert (g.batch_size, g.seq_len, g.config.vocab_size) == (4, 64, 50257)
    cuda = g.for_device("cuda")
    assert (cuda.seq_len, cuda.config.vocab_size) == (1024, 50304)
    assert SIZES["baby"].for_device("cuda") == SIZES["baby"]
    for sweep in ("n_embd", "T"):
        pts = sweep_sizes(sweep)
        values = [p.sweep_value for p in pts]
        assert values == sorted(values) and len(values) >= 4
        assert get_size(pts[1].name) == pts[1]


def test_long_context_sizes_and_batched_generation_workloads():
    """Issue 16: the T sweep reaches 2048, GPT-2 at T=1024 is a named size outside the
    defaults, and generate-b4/-b16 decode 4/16 distinct prompts in both twins."""
    from bench.numpy_adapter import generation_prompts
    from bench.sizes import DEFAULT_SIZES
    from bench.torch_adapter import TorchAdapter

    assert [p.sweep_value for p in sweep_sizes("T")][-2:] == [1024, 2048]
    g = SIZES["gpt2-124m-T1024"]
    assert (g.batch_size, g.seq_len, g.config.n_embd) == (1, 1024, 768)
    assert "gpt2-124m-T1024" not in DEFAULT_SIZES
    size = get_size("tiny", quick=True)
    a = NumpyAdapter(BACKENDS["numpy-f32"], size, seed=0)
    prompts, n = generation_prompts(a.idx, size, 16)
    assert len({tuple(p) for p in prompts}) == 16 and n > 0
    t = TorchAdapter(BACKENDS["torch-cpu"], size, seed=0)
    for w, B in (("generate-b4", 4), ("generate-b16", 16)):
        a.step(w)()
        t.step(w)()
        assert a.generation_shape(w)["gen_batch"] == t.generation_shape(w)["gen_batch"] == B
    assert a.generation_shape("generate")["gen_batch"] == 1


def test_time_steps_counts_calls():
    calls = []
    t = time_steps(lambda: calls.append(1), warmup=2, iters=3)
    assert len(calls) == 5 and len(t.times_ms) == 3 and t.first_ms is not None
    assert t.min_ms <= t.median_ms


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc (Linux)")
def test_peak_tracker_sees_an_allocation():
    tr = PeakTracker()
    tr.start()
    a = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
    del a
    assert tr.growth_mb() >= 35


def test_targets_and_table_from_rows():
    def row(backend, size, ms, mem, mfu=None, status="ok"):
        return {"backend": backend, "size": size, "workload": "train", "status": status,
                "reason": "" if status == "ok" else "why", "ms_median": ms, "ms_min": ms,
                "tokens_per_s": 1.0, "gflops": 10.0, "mfu": mfu, "peak_gflops": 20.0,
                "peak_mem_mb": mem, "compiled": False, "first_call_ms": None}

    rows = [row("numpy-f32", "baby", 30.0, 40.0), row("torch-cpu", "baby", 40.0, 50.0),
            row("numpy-f32", "6L-384", 900.0, 400.0, mfu=0.42),
            row("torch-cpu", "6L-384", 800.0, 300.0),
            row("cupy-f32", "baby", None, None, status="skipped")]
    ts = {("MFU" if "MFU" in t["target"] else "mem" if "mem" in t["target"] else "step",
           t["size"]): t for t in report.targets(rows)}
    assert ts["step", "baby"]["value"] == pytest.approx(0.75) and ts["step", "baby"]["met"]
    assert not ts["step", "6L-384"]["met"]
    assert ts["step", "6L-384"]["value"] == pytest.approx(900 / 800)
    assert ts["MFU", "6L-384"]["value"] == pytest.approx(0.42)
    assert ts["mem", "6L-384"]["value"] == pytest.approx(400 / 300)
    table = report.format_table(rows)
    assert "cupy-f32           skipped (1 measurements): why" in table
    assert "MISS" in report.format_targets(report.targets(rows))


def test_unavailable_reason_for_cupy_and_quick_compile():
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert unavailable_reason(BACKENDS["cupy-f32"]) == (
            "cupy not installed (pip install cupy-cuda12x)")
    assert unavailable_reason(BACKENDS["numpy-f32"]) is None
    with fake_cupy.installed() as fake:
        fake.is_available = lambda: False
        assert unavailable_reason(BACKENDS["cupy-f32"]) == (
            "no CUDA device (cupy.is_available() is False)")


def test_cupy_adapter_runs_numpy_gpt_on_the_device():
    """cupy-f32 is numpy_gpt with device="cuda": on the fake CuPy (tests/fake_cupy.py) every
    workload runs without a host array leaking in, and the check logits equal numpy-f32's."""
    size = get_size("tiny", quick=True)
    ref = NumpyAdapter(BACKENDS["numpy-f32"], size, seed=0).check()
    with fake_cupy.installed():
        a = NumpyAdapter(BACKENDS["cupy-f32"], size.for_device("cuda"), seed=0)
        assert a.model.device == "cuda"
        logits, loss = a.check()
        assert type(logits) is np.ndarray and loss == ref[1]
        np.testing.assert_array_equal(logits, ref[0])
        for workload in ("forward", "fwdbwd", "train", "generate", "generate-nocache",
                         "generate-b4"):
            a.device_mem_start()
            a.step(workload)()
            a.sync()
            assert a.device_peak_mb() == 0.0  # the fake's pool holds nothing
    assert "--quick" in unavailable_reason(BACKENDS["torch-cpu-compile"], quick=True)


def test_profile_breakdown_sums_to_the_step():
    assert classify("/x/numpy_gpt/nn/layers/linear.py", "linear_backward") == (
        "linear/matmul", "backward", True)
    assert classify("/x/numpy_gpt/nn/optim.py", "step") == ("AdamW", "optimizer", True)
    assert classify("/x/numpy_gpt/nn/layers/gelu.py", "gelu_recompute") == (
        "gelu", "backward", True)
    assert classify("/x/numpy_gpt/nn/model.py", "forward") == ("residual/glue", "forward", False)
    assert classify("/x/other/linear.py", "linear_forward") is None
    assert classify("/x/numpy_gpt/nn/layers/flash_attention.py", "flash_attention_backward") == (
        "attention", "backward", True)
    p = profile_train_step("tiny", steps=1, warmup=1)
    kinds = [r["kind"] for r in p["rows"]]
    assert kinds == [*KINDS, "other"]
    assert sum(r["pct"] for r in p["rows"]) == pytest.approx(100.0)
    by = {r["kind"]: r for r in p["rows"]}
    assert by["linear/matmul"]["forward_ms"] > 0 and by["AdamW"]["total_ms"] > 0


def test_torch_profile_puts_every_op_in_a_kind_and_phase():
    """--vs-torch: torch's step by the same kinds (nested ops counted once, by the nearest
    kind of their callers), phases from record_function marks, and the side-by-side table."""
    from bench.torch_profile import classify_op, format_side_by_side, profile_torch_train_step

    assert classify_op("aten::addmm") == "linear/matmul"
    assert classify_op("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert classify_op("aten::native_layer_norm_backward") == "layernorm"
    assert classify_op("aten::gelu_backward") == "gelu"
    assert classify_op("aten::nll_loss_forward") == "softmax/loss"
    assert classify_op("aten::empty") == "other"
    t = profile_torch_train_step("tiny", steps=2, warmup=1, kinds=KINDS)
    by = {r["kind"]: r for r in t["rows"]}
    assert list(by) == [*KINDS, "other"]
    assert by["linear/matmul"]["forward_ms"] > 0 and by["linear/matmul"]["backward_ms"] > 0
    assert by["layernorm"]["backward_ms"] > 0 and by["AdamW"]["optimizer_ms"] > 0
    assert by["clipping"]["optimizer_ms"] > 0 and by["AdamW"]["forward_ms"] == 0
    assert sum(r["pct"] for r in t["rows"]) == pytest.approx(100.0)
    table = format_side_by_side(profile_train_step("tiny", steps=1, warmup=1), t)
    assert "numpy/torch" in table and all(k in table for k in KINDS)
