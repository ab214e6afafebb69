"""torch_gpt/blas.py: torch's CPU BLAS from its build information, the threads it runs, and
the torch-only kernel variables in the header line (the environment faked as a dict)."""

import pytest

torch = pytest.importorskip("torch")

from torch_gpt.blas import torch_blas, torch_blas_lines  # noqa: E402

MKL_SHOW = ("PyTorch built with:\n  - Intel(R) oneAPI Math Kernel Library Version "
            "2024.2-Product Build 20240605 for Intel(R) 64 architecture applications\n"
            "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl\n")


def test_torch_blas_from_build_information():
    info = torch_blas(MKL_SHOW)
    assert (info.owner, info.library, info.version) == ("torch", "MKL", "2024.2")
    assert info.threads == torch.get_num_threads()
    here = torch_blas()  # this build's, whatever it is
    assert here.library and here.describe().startswith(here.library)


def test_header_lines_name_threads_and_torch_only_variables():
    (line,) = torch_blas_lines({"ATEN_CPU_CAPABILITY": "avx2"}, threads=1)
    assert line.startswith("torch BLAS: ") and "(" in line and "1 thread" in line
    assert line.endswith("; ATEN_CPU_CAPABILITY=avx2 set")
