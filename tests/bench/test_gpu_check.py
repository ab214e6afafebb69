"""bench/gpu_check.sh: the one GPU command, proven wired on the CPU before a GPU minute is spent.

The dry run is the real command with --dry-run: every step runs (parity, pytest -m cuda, each
bench step), the torch CUDA backends are reported skipped with their reason, cupy-f32 runs
numpy_gpt's device code on tests/fake_cupy.py, and the files come out as on a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check
from bench.gpu_check import Step

ROOT = Path(__file__).resolve().parents[2]
MAX_FILES, MAX_BYTES = 8, 16 * 2**20  # what the GPU machine hands back


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess,
                                                               Path]:
    out = tmp_path_factory.mktemp("gpu") / "out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", str(out)],
                          check=False, capture_output=True, text=True, timeout=600)
    return proc, out


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_the_files(dry_run) -> None:
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == [s.name for s in gpu_check.STEPS]
    assert all(s["status"] == "ok" for s in summary["steps"]), summary["steps"]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert 6 <= len(files) <= MAX_FILES, files
    assert all(p.stat().st_size < MAX_BYTES for p in files)
    assert {p.name for p in files} >= {"summary.json", "gpu_check.log", "parity.json",
                                       "parity-hf.json"}
    assert sorted(summary["files"]) == sorted(p.name for p in files if p.suffix in
                                              (".json", ".md", ".png") and p.stem.endswith(
                                                  "-dry-run"))


@pytest.mark.slow
def test_dry_run_bench_rows_cover_every_backend_and_workload(dry_run) -> None:
    _, out = dry_run
    (results,) = out.glob("*-dry-run.json")
    data = json.loads(results.read_text())
    rows = data["rows"]
    assert data["env"]["gpu_check"]["dry_run"] is True
    # the same format as bench/results/: what bench --save-results writes
    assert {"env", "peaks", "rows"} <= set(data)
    by_backend = {}
    for r in rows:
        by_backend.setdefault(r["backend"], set()).add(r["status"])
    # numpy_gpt's device code ran on the fake CuPy in every bench step
    assert by_backend["cupy-f32"] == {"ok"}
    assert {r["gpu_check_step"] for r in rows if r["backend"] == "cupy-f32"} == {
        s.name for s in gpu_check.STEPS if s.name.startswith("bench")}
    for name in ("torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-bf16", "torch-cuda-compile"):
        skipped = [r for r in rows if r["backend"] == name]
        assert skipped and all(r["status"] == "skipped" and r["reason"] for r in skipped)
    assert {r["workload"] for r in rows} == {"train", "generate", "generate-b16"}
    assert {r["size"] for r in rows if r.get("sweep") == "T"} == {"TL8", "TL16"}


@pytest.mark.slow
def test_dry_run_probe_and_parity_and_cuda_tests(dry_run) -> None:
    _, out = dry_run
    summary = json.loads((out / "summary.json").read_text())
    machine = summary["machine"]
    assert machine["matmul_peaks"]["torch-cpu"]["gflops"] > 0
    assert machine["matmul_peaks"]["cupy-f32"]["gflops"] > 0  # the fake CuPy: NumPy's BLAS
    assert machine["memory_bandwidth"]["gb_per_s"] > 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["rows"] and all(r["ok"] for r in parity["rows"])
    hf = json.loads((out / "parity-hf.json").read_text())
    assert hf["rows"] and all(r["ok"] for r in hf["rows"])
    log = (out / "gpu_check.log").read_text()
    assert "skipped" in log and " -m cuda " in log  # the CUDA tests collected and skipped
    # no GPU figures, so every CUDA target says it has no data instead of MET or MISS
    assert summary["targets"] and all(t["met"] is None for t in summary["targets"])


def test_a_step_that_overruns_is_killed_and_the_rest_go_on(tmp_path, monkeypatch) -> None:
    sleeper = [sys.executable, "-c", ("import time; print('started', flush=True); "
               "time.sleep(60)")]
    steps = [Step("slow", "sleeps past its limit", 2, lambda tmp, dry: sleeper),
             Step("fails", "exits 3", 30, lambda tmp, dry: [sys.executable, "-c",
                                                              "raise SystemExit(3)"]),
             Step("fine", "exits 0", 30, lambda tmp, dry: [sys.executable, "-c", "pass"])]
    monkeypatch.setattr(gpu_check, "STEPS", steps)
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1)
    monkeypatch.setattr(gpu_check, "FINISH_S", 0)
    summary = gpu_check.run_checks(tmp_path / "out", dry=True, budget_s=60)
    status = {s["name"]: (s["status"], s["reason"]) for s in summary["steps"]}
    assert status == {"slow": ("timeout", "ran out of its 2 s"),
                      "fails": ("failed", "exit status 3"), "fine": ("ok", None)}
    assert summary["ok"] is False
    assert "started" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_steps_past_the_budget_are_skipped_with_the_reason(tmp_path, monkeypatch) -> None:
    steps = [Step(f"s{i}", "sleeps 1 s", 30, lambda tmp, dry: [sys.executable, "-c",
                                                               "import time; time.sleep(1)"])
             for i in range(3)]
    monkeypatch.setattr(gpu_check, "STEPS", steps)
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1.5)
    monkeypatch.setattr(gpu_check, "FINISH_S", 0)
    summary = gpu_check.run_checks(tmp_path / "out", dry=True, budget_s=2.2)
    assert [s["status"] for s in summary["steps"]] == ["ok", "skipped", "skipped"]
    assert "budget spent" in summary["steps"][1]["reason"]


@pytest.mark.parametrize("argv, message", [
    ([], "give OUT_DIR"),
    (["x", "--only", "nope"], "unknown step"),
    (["--budget", "5", "x"], "--budget must be"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        gpu_check.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_folder_with_results_is_never_overwritten(tmp_path, capsys) -> None:
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(SystemExit):
        gpu_check.main([str(tmp_path)])
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "summary.json").read_text() == "{}"


def test_list_names_every_step(capsys) -> None:
    assert gpu_check.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(s.name in out for s in gpu_check.STEPS)


def test_a_bench_step_that_runs_out_keeps_the_rows_it_finished(tmp_path, monkeypatch) -> None:
    """bench --json appends each finished row to PATH.partial.jsonl; a step killed at its
    limit still contributes those rows to the merged results."""
    done = tmp_path / "done.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--backends", "numpy-f32",
                           "--workloads", "forward", "train", "--json", str(done)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not Path(f"{done}.partial.jsonl").exists()  # removed once the JSON is written
    rows = json.loads(done.read_text())["rows"]

    def argv(tmp: Path, dry: bool) -> list[str]:
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        return [sys.executable, "-c", f"open({str(tmp / 'bench-x.json.partial.jsonl')!r}, "
                f"'w').write({lines!r}); import time; time.sleep(60)"]

    monkeypatch.setattr(gpu_check, "STEPS", [Step("bench-x", "runs out", 3, argv)])
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1)
    summary = gpu_check.run_checks(tmp_path / "out", dry=True, budget_s=60)
    assert summary["steps"][0]["status"] == "timeout"
    (merged,) = (tmp_path / "out").glob("*-dry-run.json")
    kept = json.loads(merged.read_text())["rows"]
    assert [(r["workload"], r["ms_median"]) for r in kept] == [
        (r["workload"], r["ms_median"]) for r in rows]
    assert all(r["partial_run"] and r["gpu_check_step"] == "bench-x" for r in kept)
