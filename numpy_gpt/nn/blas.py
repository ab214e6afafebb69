"""Which BLAS NumPy's matmuls run on, and whether its kernel was forced older than the CPU.

    info = numpy_blas()              # BlasInfo: library, version, threads, kernel, threading
    info.describe()                  # 'OpenBLAS 0.3.31 (SkylakeX kernel, 2 threads, pthreads)'
    blas_lines(info, command="python -m numpy_gpt train ...")   # a header's 1 or 2 lines

A CPU figure means little without the kernel that produced it. OpenBLAS picks its kernel at
load time from the CPU (DYNAMIC_ARCH), unless `OPENBLAS_CORETYPE` names one: some machines'
environments set it (with `OPENBLAS_L2_SIZE`) because older OpenBLAS builds crashed on their
CPUs, and that forces NumPy onto an older, slower kernel (Haswell's AVX2 on an AVX-512 Xeon,
say) while torch's MKL is not affected the same way. So the header says which kernel ran
(threadpoolctl's `architecture`, OpenBLAS's core name), the two variables when they are set,
and, when the forced kernel is older than what /proc/cpuinfo's flags allow, one line saying
so and how to measure natively.

The project never sets or unsets these variables itself (not in tests, not in CI): a run is
measured in the environment it was given, and the header tells the reader which that was.

What it omits: which kernel a library *would* pick is approximated from CPU flags by ISA
level (SSE, AVX, AVX2, AVX-512), not OpenBLAS's exact per-model table; kernels of the same
level (Haswell and Zen, SkylakeX and Cooperlake) are never called older than each other.
torch's BLAS is described by torch_gpt/blas.py (numpy_gpt never imports torch).

Ref: threadpoolctl.threadpool_info(); OpenBLAS driver/others/dynamic.c (the core names,
OPENBLAS_CORETYPE) and its FAQ on OPENBLAS_L2_SIZE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# set in some environments to force OpenBLAS's kernel (and its cache-blocking size)
FORCING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NATIVE_HINT = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"

# OpenBLAS x86-64 core names (lower case) -> the ISA level their kernels need:
# 1 SSE2/SSE3, 2 AVX, 3 AVX2 + FMA, 4 AVX-512 (F, BW, DQ, VL)
KERNEL_LEVEL = {
    **dict.fromkeys(("prescott", "core2", "penryn", "dunnington", "nehalem", "atom",
                     "opteron", "opteron_sse3", "barcelona", "bobcat", "katmai",
                     "coppermine", "northwood", "banias"), 1),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"), 2),
    **dict.fromkeys(("haswell", "zen"), 3),
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), 4),
}
LEVEL_NAME = {1: "SSE", 2: "AVX", 3: "AVX2", 4: "AVX-512"}
LEVEL_KERNEL = {1: "Nehalem", 2: "Sandybridge", 3: "Haswell", 4: "SkylakeX"}


@dataclass(frozen=True)
class BlasInfo:
    """One BLAS as loaded in this process. `architecture` is the kernel OpenBLAS runs (its
    core name) or, for torch, the CPU capability its kernels were dispatched to."""

    owner: str  # whose matmuls: "numpy" | "torch"
    library: str  # "OpenBLAS" | "MKL" | "BLIS" | ... | "unknown"
    version: str | None = None
    threads: int | None = None
    architecture: str | None = None
    threading: str | None = None  # threading layer: pthreads, openmp, tbb

    def describe(self) -> str:
        """e.g. 'OpenBLAS 0.3.31 (SkylakeX kernel, 2 threads, pthreads)'."""
        name = self.library + (f" {self.version}" if self.version else "")
        parts = []
        if self.architecture:
            parts.append(f"{self.architecture} kernel" if self.library == "OpenBLAS"
                         else self.architecture)
        if self.threads is not None:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        if self.threading:
            parts.append(self.threading)
        return f"{name} ({', '.join(parts)})" if parts else name

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_LIBRARY = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS", "flexiblas": "FlexiBLAS"}


def from_threadpool(pool: Mapping[str, Any], owner: str) -> BlasInfo:
    """A BlasInfo from one entry of threadpoolctl.threadpool_info()."""
    api = str(pool.get("internal_api", "unknown"))
    return BlasInfo(owner=owner, library=_LIBRARY.get(api, api), version=pool.get("version"),
                    threads=pool.get("num_threads"), architecture=pool.get("architecture"),
                    threading=pool.get("threading_layer"))


def numpy_blas(pools: list[Mapping[str, Any]] | None = None) -> BlasInfo:
    """NumPy's BLAS from threadpoolctl (`pools`: its threadpool_info(), for tests). Among
    several BLAS libraries loaded, the one inside NumPy's own folders (numpy.libs, numpy/)
    wins; without threadpoolctl, NumPy's build information (no kernel, no threads)."""
    import numpy as np

    if pools is None:
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            return _numpy_build_blas()
        pools = threadpool_info()
    blas = [p for p in pools if p.get("user_api") == "blas"]
    if not blas:
        return _numpy_build_blas()
    root = os.path.dirname(os.path.dirname(np.__file__))  # site-packages: numpy/, numpy.libs/
    ours = [p for p in blas if str(p.get("filepath", "")).startswith(
        (os.path.join(root, "numpy"), os.path.join(root, "numpy.libs")))]
    return from_threadpool((ours or blas)[0], "numpy")


def _numpy_build_blas() -> BlasInfo:
    import numpy as np

    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = str(cfg.get("name", "unknown"))
        library = next((v for k, v in _LIBRARY.items() if k in name.lower()), name)
        return BlasInfo("numpy", library, cfg.get("version"))
    except Exception:  # noqa: BLE001 -- older NumPy: no dict mode
        return BlasInfo("numpy", "unknown")


def forced_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel-forcing variables that are set, e.g. {"OPENBLAS_CORETYPE": "Haswell"}."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in FORCING_VARS if environ.get(k)}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (`cpuinfo`: its text, for tests); empty
    where there is none (not Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_level(flags: set[str]) -> int | None:
    """The highest ISA level (KERNEL_LEVEL's scale) the flags allow; None without flags."""
    if not flags:
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return 4
    if {"avx2", "fma"} <= flags:
        return 3
    if "avx" in flags:
        return 2
    return 1


def kernel_level(architecture: str | None) -> int | None:
    return KERNEL_LEVEL.get((architecture or "").lower())


def older_kernel_note(info: BlasInfo, flags: set[str], environ: Mapping[str, str] | None = None,
                      command: str = "python -m ...") -> str | None:
    """One line when `info` is an OpenBLAS whose kernel is older than what the CPU's flags
    allow: why (the forcing variable, or the build) and how to measure natively. None when
    the kernel is native, unknown, or the library is not OpenBLAS."""
    have, runs = cpu_level(flags), kernel_level(info.architecture)
    if info.library != "OpenBLAS" or have is None or runs is None or runs >= have:
        return None
    forced = forced_settings(environ)
    cpu = f"this CPU has {LEVEL_NAME[have]} (OpenBLAS's {LEVEL_KERNEL[have]} kernel or newer)"
    if "OPENBLAS_CORETYPE" in forced:
        settings = " ".join(f"{k}={v}" for k, v in forced.items())
        return (f"{info.owner}'s OpenBLAS runs its {info.architecture} "
                f"({LEVEL_NAME[runs]}) kernel, forced by {settings}; {cpu}, so these "
                f"{info.owner} figures are slower than native. Measure natively with: "
                f"{NATIVE_HINT} {command}")
    return (f"{info.owner}'s OpenBLAS runs its {info.architecture} "
            f"({LEVEL_NAME[runs]}) kernel although {cpu}: the OpenBLAS build chose it "
            "(OPENBLAS_CORETYPE is not set)")


def blas_lines(info: BlasInfo, environ: Mapping[str, str] | None = None,
               cpuinfo: str | None = None, command: str = "python -m ...") -> list[str]:
    """A header's BLAS lines: 'numpy BLAS: <library>' with the forcing variables when set,
    then 'note: <why the kernel is older>' when it applies (`environ`, `cpuinfo`: tests)."""
    forced = forced_settings(environ)
    line = f"{info.owner} BLAS: {info.describe()}"
    if forced:
        line += "; " + " ".join(f"{k}={v}" for k, v in forced.items()) + " set"
    note = older_kernel_note(info, cpu_flags(cpuinfo), environ, command)
    return [line, *([f"note: {note}"] if note else [])]


def kernel_tag(info: BlasInfo, environ: Mapping[str, str] | None = None) -> str | None:
    """'openblas-haswell' when OPENBLAS_CORETYPE forces the kernel (for file names), else
    None: a results file's name says the kernel when it is not the library's own choice."""
    if "OPENBLAS_CORETYPE" not in forced_settings(environ):
        return None
    return f"openblas-{(info.architecture or forced_settings(environ)['OPENBLAS_CORETYPE'])}" \
        .lower()
