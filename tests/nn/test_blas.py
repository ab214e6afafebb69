"""numpy_gpt/nn/blas.py: NumPy's BLAS from threadpoolctl, the forced-older-kernel note
(threadpoolctl's info, /proc/cpuinfo and the environment faked as values: the project never
sets OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE, here or anywhere, which the last test checks),
and `train`'s header naming the BLAS in both twins."""

import re
from pathlib import Path

import pytest
from conftest import twin_named

from numpy_gpt.nn.blas import (
    BlasInfo,
    blas_lines,
    cpu_flags,
    cpu_level,
    forced_settings,
    kernel_tag,
    numpy_blas,
    older_kernel_note,
)

ROOT = Path(__file__).resolve().parents[2]
XEON = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
        "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni\n")
POOLS = [
    {"user_api": "openmp", "internal_api": "openmp", "num_threads": 4, "version": None,
     "filepath": "/x/libgomp.so"},
    {"user_api": "blas", "internal_api": "openblas", "version": "0.3.27", "num_threads": 2,
     "architecture": "Haswell", "threading_layer": "pthreads", "filepath": "/x/libopenblas.so"},
]
HASWELL = BlasInfo("numpy", "OpenBLAS", "0.3.27", 2, "Haswell", "pthreads")
FORCED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "HOME": "/root"}


def test_numpy_blas_reads_threadpoolctl():
    info = numpy_blas(POOLS)  # the BLAS entry, not OpenMP's
    assert info == HASWELL
    assert info.describe() == "OpenBLAS 0.3.27 (Haswell kernel, 2 threads, pthreads)"
    assert BlasInfo("torch", "MKL", "2024.2", 1, "AVX512").describe() == \
        "MKL 2024.2 (AVX512, 1 thread)"
    here = numpy_blas()  # whatever this machine has: a library, and a kernel for OpenBLAS
    assert here.library and here.owner == "numpy"
    if here.library == "OpenBLAS":
        assert here.architecture and here.threads >= 1


def test_cpu_flags_and_levels():
    flags = cpu_flags(XEON)
    assert {"avx512f", "avx2"} <= flags and cpu_level(flags) == 4
    assert cpu_level({"avx", "avx2", "fma"}) == 3 and cpu_level({"sse2"}) == 1
    assert cpu_level(cpu_flags("no flags here")) is None
    assert forced_settings(FORCED) == {"OPENBLAS_CORETYPE": "Haswell",
                                       "OPENBLAS_L2_SIZE": "1048576"}
    assert forced_settings({"OPENBLAS_CORETYPE": ""}) == {}


def test_forced_older_kernel_note_says_so_and_how_to_measure_natively():
    lines = blas_lines(HASWELL, FORCED, XEON, command="python -m numpy_gpt train ...")
    assert lines[0] == ("numpy BLAS: OpenBLAS 0.3.27 (Haswell kernel, 2 threads, pthreads); "
                        "OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=1048576 set")
    assert len(lines) == 2 and lines[1].startswith("note: numpy's OpenBLAS runs its Haswell "
                                                   "(AVX2) kernel, forced by OPENBLAS_CORETYPE")
    assert "this CPU has AVX-512" in lines[1]
    assert lines[1].endswith("Measure natively with: env -u OPENBLAS_CORETYPE -u "
                             "OPENBLAS_L2_SIZE python -m numpy_gpt train ...")
    assert kernel_tag(HASWELL, FORCED) == "openblas-haswell"


def test_no_note_for_a_native_kernel_or_another_library():
    avx2 = "flags\t\t: sse2 avx avx2 fma\n"
    assert blas_lines(HASWELL, FORCED, avx2)[1:] == []  # Haswell is native to an AVX2 CPU
    skx = BlasInfo("numpy", "OpenBLAS", "0.3.31", 2, "SkylakeX")
    assert older_kernel_note(skx, cpu_flags(XEON), {}) is None
    mkl = BlasInfo("torch", "MKL", "2024.2", 2, "AVX2")
    assert older_kernel_note(mkl, cpu_flags(XEON), FORCED) is None
    # older but not forced: said too, as the build's choice (no re-run would change it)
    note = older_kernel_note(HASWELL, cpu_flags(XEON), {})
    assert "the OpenBLAS build chose it" in note and "env -u" not in note
    assert kernel_tag(HASWELL, {}) is None


@pytest.mark.parametrize("twin", ["numpy", "torch"])
def test_train_header_names_the_blas(twin, citizens_chars, tmp_path, capsys):
    from numpy_gpt.cli.main import main

    code = main(["train", "--dataset", str(citizens_chars), "--n-layer", "1", "--n-head", "2",
                 "--n-embd", "16", "--block-size", "16", "--batch-size", "2", "--max-iters",
                 "1", "--eval-interval", "1", "--eval-iters", "1", "--sample-tokens", "0",
                 "--threads", "1", "--no-plot", "--out", str(tmp_path / "run")],
                twin=twin_named(twin))
    out = capsys.readouterr().out
    assert code == 0, out
    (line,) = [x for x in out.splitlines() if " BLAS: " in x]
    assert line.startswith(f"{twin} BLAS: ")
    if twin == "torch":
        assert "1 thread" in line  # the run's --threads


def test_the_project_never_sets_the_kernel_variables():
    """DESIGN.md: the project measures in the environment it is given and never sets or
    unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE itself: no code, test, script or CI file
    assigns them (the README's `env -u ...` is advice to the reader, not run by us)."""
    assign = re.compile(r"(environ\[\s*['\"]OPENBLAS_(CORETYPE|L2_SIZE)['\"]\s*\]\s*=|"
                        r"setenv\(\s*['\"]OPENBLAS_(CORETYPE|L2_SIZE)|putenv\(|"
                        r"^\s*(export\s+)?OPENBLAS_(CORETYPE|L2_SIZE)=|"
                        r"(environ|env)\.(pop|update|setdefault)\([^)]*OPENBLAS_)", re.M)
    found = []
    for path in ROOT.rglob("*"):
        if (path.suffix not in (".py", ".sh", ".yml", ".yaml", ".toml", ".cfg", ".ini")
                or any(p.startswith(".") or p in ("out", "build") for p in
                       path.relative_to(ROOT).parts[:-1])):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in assign.finditer(text)]
    assert not found, found
