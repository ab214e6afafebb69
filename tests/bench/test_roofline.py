"""bench/roofline.py and the header (issues 26, 27): the guard that withholds a figure above
what the same run measured the machine can do, MBU against the measured bandwidth (none for
a model inside the cache), the busy-machine warning counting only other processes, and the
BLAS lines -- with a forced older OpenBLAS kernel faked (threadpoolctl's info, /proc/cpuinfo,
the environment as dicts: the tests never set OPENBLAS_CORETYPE)."""

import pytest

from bench import cli, report
from bench.env import blas_info, machine_id
from bench.roofline import add_roofline, mark_impossible

MIB = 2**20
PEAKS = {
    "numpy-cpu-float32": {"status": "ok", "gflops": 198.0, "spread": 0.02},
    "torch-cpu-float32": {"status": "ok", "gflops": 190.0, "spread": 0.01},
    "numpy-cpu-bandwidth": {"status": "ok", "kind": "bandwidth", "device": "cpu",
                            "gbps": 20.0, "spread": 0.03, "cache_bytes": 32 * MIB},
}


def row(gflops=None, *, workload="generate-b16", backend="numpy-f32", ms=1000.0,
        bytes_per_step=None, working_set=None):
    return {"backend": backend, "size": "gpt2-124m", "workload": workload, "status": "ok",
            "reason": "", "device": "cpu", "precision": "float32", "compiled": False,
            "first_call_ms": None, "ms_median": ms, "ms_min": ms, "tokens_per_s": 185.0,
            "gflops": gflops, "mfu": None if gflops is None else gflops / 198.0,
            "peak_mem_mb": 10.0, "best_peak_key": "numpy-cpu-float32",
            "best_peak_gflops": 198.0, "mfu_best": None, "bytes_per_step": bytes_per_step,
            "working_set_bytes": working_set, "gbps": None, "mbu": None}


def test_a_row_above_the_measured_peak_is_impossible_and_fails_the_run():
    """The issue's row: 1818.9 GFLOP/s on a machine whose float32 matmul peak in the same
    run was 198: withheld, with the reason, and the run exits 1. A row within the peak's
    spread (or the 5 % floor) is not."""
    bad, near, fine = row(1818.9), row(205.0), row(150.0)
    rows = [bad, near, fine]
    mark_impossible(rows, PEAKS)
    assert bad["status"] == "impossible" and bad["gflops"] is None and bad["mfu"] is None
    assert bad["claimed_gflops"] == 1818.9
    assert "1818.9 GFLOP/s is 919% of the fastest float32 matmul" in bad["reason"]
    assert "numpy-cpu-float32 198.0 GFLOP/s" in bad["reason"] and "FLOP count" in bad["reason"]
    assert near["status"] == fine["status"] == "ok" and near["gflops"] == 205.0
    assert cli.exit_status(rows) == 1 and cli.exit_status([near, fine]) == 0
    table = report.format_table(rows)
    line = next(x for x in table.splitlines() if "impossible" in x)
    assert "1818.9" not in line.split("impossible:")[0]  # never shown as a plain figure
    assert "| impossible |" in report.markdown_table(rows)


def test_mbu_only_where_the_roofline_applies():
    """GB/s = bytes / median time on every decoding row; MBU against the best bandwidth of the
    device where a decode step reads more than the last-level cache, else a note."""
    big = row(bytes_per_step=10_000 * MIB, working_set=500 * MIB, ms=1000.0)
    small = row(bytes_per_step=100 * MIB, working_set=4 * MIB, ms=100.0)
    train = row(50.0, workload="train")
    cuda = dict(row(bytes_per_step=MIB, working_set=MIB), device="cuda")
    add_roofline([big, small, train, cuda], PEAKS)
    assert big["gbps"] == pytest.approx(10_000 * MIB / 1e9)
    assert big["mbu"] == pytest.approx(big["gbps"] / 20.0)
    assert big["bandwidth_key"] == "numpy-cpu-bandwidth" and big["bandwidth_gbps"] == 20.0
    assert small["gbps"] == pytest.approx(100 * MIB / 0.1 / 1e9) and small["mbu"] is None
    assert small["roofline_note"].startswith("in cache: 4.0 MiB read per step")
    assert train["gbps"] is None and train["mbu"] is None
    assert cuda["mbu"] is None and "no memory bandwidth measured" in cuda["roofline_note"]
    assert "in cache" in report.format_table([small])
    assert " 52.4%" in report.format_table([big])  # 10.49 GB/s of 20.0


def test_bytes_above_the_bandwidth_impossible_unless_the_cache_can_serve_them():
    """Above the measured bandwidth (beyond its spread): impossible when a decode step reads
    more than twice the cache, a "partly in cache" note (no MBU) when less."""
    far = row(bytes_per_step=40_000 * MIB, working_set=500 * MIB)  # 41.9 GB/s > 20
    near = row(bytes_per_step=40_000 * MIB, working_set=48 * MIB)
    ok = row(bytes_per_step=19_000 * MIB, working_set=500 * MIB)  # 19.9 GB/s < 20 x 1.05
    rows = [far, near, ok]
    add_roofline(rows, PEAKS)
    mark_impossible(rows, PEAKS)
    assert far["status"] == "impossible" and far["gbps"] is None and far["mbu"] is None
    assert "of the memory bandwidth measured in this run" in far["reason"]
    assert "byte count must be wrong" in far["reason"] and far["claimed_gbps"] > 40
    assert near["status"] == "ok" and near["mbu"] is None
    assert near["roofline_note"].startswith("partly in cache")
    assert ok["status"] == "ok" and ok["mbu"] == pytest.approx(ok["gbps"] / 20)


def _env(**extra):
    env = {"cpu_model": "Intel Xeon", "cpu_cores": 2, "threads": 2, "python": "3.11",
           "numpy": "2", "torch": "2", "git_commit": "abc", "loadavg_start": [3.0, 1, 1],
           "loadavg_end": [3.5, 1, 1], "loadavg_1m_max": 3.5, "foreign_cpu_max": 0.01}
    return {**env, **extra}


def test_the_busy_warning_counts_only_other_processes():
    """A load average above the cores (the bench's own two threads) is no warning; other
    processes' CPU share is, and the warning says what it measured."""
    quiet = report.format_env(_env(), {})
    assert "WARNING" not in quiet and "the bench's own workers included" in quiet
    assert "2 cores; 2 threads per measurement" in quiet
    busy = report.format_env(_env(foreign_cpu_max=0.3), {})
    assert "WARNING  other processes used up to 30% of the machine's CPU time" in busy
    assert "/proc/stat busy time minus the bench's own CPU time" in busy


HASWELL = [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.27",
            "num_threads": 2, "architecture": "Haswell", "threading_layer": "pthreads",
            "filepath": "/somewhere/libopenblas.so"}]
XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl\n"
ZEN2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
FORCED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}


def test_a_forced_older_kernel_is_flagged_in_the_header_and_the_file_name():
    """Issue 26: numpy's OpenBLAS forced to Haswell on an AVX-512 CPU: the header names the
    kernel and the variables, one NOTE line says it is older and how to measure natively,
    and the results file's name (the machine id) says the kernel."""
    command = "python -m bench --sizes baby"
    info = blas_info(2, command, environ=FORCED, cpuinfo=XEON, numpy_pools=HASWELL)
    assert info["numpy_blas"] == "OpenBLAS 0.3.27 (Haswell kernel, 2 threads, pthreads)"
    assert info["blas_env"] == FORCED and info["blas_kernel_tag"] == "openblas-haswell"
    (note,) = info["blas_notes"]
    assert "forced by OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=1048576" in note
    assert "AVX-512" in note
    assert note.endswith("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench "
                         "--sizes baby")
    env = _env(**info)
    assert machine_id(env) == "intel-xeon-2c-openblas-haswell"
    header = report.format_env(env, {})
    assert "blas     numpy: OpenBLAS 0.3.27 (Haswell kernel" in header
    assert "set in the environment: OPENBLAS_CORETYPE=Haswell" in header
    assert f"NOTE     {note}" in header


def test_a_native_kernel_gets_no_note_and_a_plain_file_name():
    """The same Haswell kernel on an AVX2 CPU (it is native there), and an unforced run: no
    note; the file name says the CPU only."""
    forced_native = blas_info(2, environ=FORCED, cpuinfo=ZEN2, numpy_pools=HASWELL)
    assert forced_native["blas_notes"] == [] and forced_native["blas_env"] == FORCED
    unforced = blas_info(2, environ={}, cpuinfo=ZEN2, numpy_pools=HASWELL)
    assert unforced["blas_kernel_tag"] is None and unforced["blas_env"] == {}
    assert machine_id(_env(**unforced)) == "intel-xeon-2c"


def test_the_chart_has_a_decoding_panel(tmp_path):
    from bench.plot import plot

    r = row(100.0, bytes_per_step=10_000 * MIB, working_set=500 * MIB)
    r.update(sweep=None, sweep_value=None)
    add_roofline([r], PEAKS)
    assert plot([r], tmp_path / "chart.png") and (tmp_path / "chart.png").stat().st_size > 1000
