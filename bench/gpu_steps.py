"""The steps of `python -m bench.gpu_check`: each a command of the project's own, with its limit.

    for step in STEPS:
        cmd = step.argv(scratch, dry)   # the command line; dry: the same step on the CPU

One table, in the order that matters most if time runs short (gpu_check.py's docstring says
what each step measures and where its limits come from): the machine probe, parity on CUDA,
parity against transformers' GPT-2, the tests marked cuda, then the bench steps. Every step
has a dry form that runs on the CPU at tiny sizes (the torch CUDA backends then report
themselves skipped and cupy-f32 runs on tests/fake_cupy.py), so that its wiring is proven
before a GPU minute is spent.

Deliberately omits: running the steps, the budget and the log (gpu_check.py); merging their
results and grading the CUDA targets (gpu_results.py); what the machine step measures
(gpu_probe.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
