"""`python -m bench.profile`: where a numpy_gpt float32 training step spends its time.

    python -m bench.profile --size 6L-384 [--steps 3] [--json profile.json]

Runs warm-up steps, then profiles `--steps` full training steps (forward, backward,
grad_norm, AdamW) with cProfile and aggregates the time by numpy_gpt function into layer
kinds, forward and backward apart:

    attention       attention_forward/backward (q k^T, softmax, att v and their gradients),
                    or flash_attention_forward/backward where the model tiles attention;
                    grouped-query attention (n_kv_head < n_head) is the same functions
    linear/matmul   linear_forward/backward: every projection, the MLP and the lm_head
    gelu, layernorm, embedding, dropout        their _forward/_backward functions
    rmsnorm, rope, swiglu   the Llama blocks' layers, likewise (rope_forward/backward turn
                    q and k; swiglu_recompute rebuilds c_proj's input in backward). Where
                    model.py writes a rotated q|k back into the fused qkv, that copy is
                    residual/glue
    softmax/loss    cross_entropy_forward/backward (softmax over V, the loss)
    residual/glue   GPT.forward/GPT.backward's own lines: residual adds, fan-out sums
    AdamW           AdamW.step (with clipping's scale);  clipping: grad_norm
    other           the rest of the step (the loop and bookkeeping outside these functions)

Each layer function is counted by its inclusive time (cProfile's cumtime) less the calls
it received from another counted function (a *_recompute calling its *_forward: that time
is the recompute's, in backward, and counted once); GPT.forward/backward by their
exclusive time. NumPy's operators and ufuncs (@, +, np.exp) are C calls that cProfile does
not see separately, so they land in the function that wrote them, which is what we want.
cProfile's own overhead is a few hundred Python calls per step, small next to 6L-384's
~1 s; the unprofiled step time is printed next to the profiled one so it can be judged.

Ref: Python docs, "The Python Profilers" (cProfile, pstats).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

KINDS = ("attention", "linear/matmul", "gelu", "layernorm", "rmsnorm", "rope", "swiglu",
         "softmax/loss", "embedding", "dropout", "residual/glue", "AdamW", "clipping")

# (file suffix, function name prefix) -> kind; the phase comes from the name
_FUNCTIONS = {
    ("layers/attention.py", "attention_"): "attention",
    ("layers/flash_attention.py", "flash_attention_"): "attention",  # the tiled kernel
    ("layers/linear.py", "linear_"): "linear/matmul",
    ("layers/gelu.py", "gelu_"): "gelu",
    ("layers/layernorm.py", "layernorm_"): "layernorm",
    ("layers/rmsnorm.py", "rmsnorm_"): "rmsnorm",  # the Llama blocks' (issue 25)
    ("layers/rope.py", "rope_"): "rope",
    ("layers/swiglu.py", "swiglu_"): "swiglu",
    ("layers/loss.py", "cross_entropy_"): "softmax/loss",
    ("layers/embedding.py", "embedding_"): "embedding",
    ("layers/dropout.py", "dropout_"): "dropout",
}


def classify(filename: str, func: str) -> tuple[str, str, bool] | None:
    """(kind, phase, inclusive?) for a numpy_gpt function worth counting, else None."""
    path = filename.replace(os.sep, "/")
    if "numpy_gpt/" not in path:
        return None
    for (suffix, prefix), kind in _FUNCTIONS.items():
        if path.endswith(suffix) and func.startswith(prefix) and func.endswith(
                ("_forward", "_backward", "_recompute")):  # recompute: rebuilt in backward
            return kind, "forward" if func.endswith("_forward") else "backward", True
    if path.endswith("numpy_gpt/nn/model.py") and func in ("forward", "backward"):
        return "residual/glue", func, False  # exclusive: the layers are counted above
    if path.endswith("numpy_gpt/nn/optim.py"):
        if func == "step":
            return "AdamW", "optimizer", True
        if func in ("grad_norm", "clip_grad_norm"):
            return "clipping", "optimizer", True
    return None


def profile_train_step(size_name: str, steps: int, warmup: int, seed: int = 0
                       ) -> dict[str, Any]:
    """Profile `steps` numpy float32 training steps at `size_name`; returns the breakdown."""
    from numpy_gpt.nn.runtime import keep_freed_memory

    keep_freed_memory()  # as the bench does, before anything big is allocated
    from .backends import BACKENDS
    from .numpy_adapter import NumpyAdapter
    from .sizes import get_size

    size = get_size(size_name)
    # one thread: cProfile sees only the main thread, so the shards would be invisible
    step = NumpyAdapter(BACKENDS["numpy-f32"], size, seed=seed, threads=1).step("train")
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    plain_ms = (time.perf_counter() - t0) * 1e3 / steps

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    step_ms = (time.perf_counter() - t0) * 1e3 / steps
    rows, functions = breakdown(prof, steps, step_ms)
    return {"size": size.name, "shape": size.shape(), "backend": "numpy-f32",
            "workload": "train", "steps": steps, "warmup": warmup,
            "step_ms_profiled": step_ms, "step_ms_unprofiled": plain_ms,
            "rows": rows, "functions": functions}


def breakdown(prof: cProfile.Profile, steps: int, step_ms: float
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(a row per kind of KINDS and "other", a row per counted function), ms per step, from
    a profile of `steps` steps of `step_ms` each (see the module docstring)."""
    table: dict[str, dict[str, float]] = {k: {"forward": 0.0, "backward": 0.0,
                                              "optimizer": 0.0} for k in KINDS}
    functions = []
    for (filename, _line, func), (_cc, nc, tt, ct, callers) in \
            pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        kind = classify(filename, func)
        if kind is None:
            continue
        name, phase, inclusive = kind
        if inclusive:  # a call from another counted function is in that one's time already
            ct -= sum(c[3] for (f, _, fn), c in callers.items()
                      if (k := classify(f, fn)) is not None and k[2])
        ms = (ct if inclusive else tt) * 1e3 / steps
        table[name][phase] += ms
        functions.append({"function": f"{Path(filename).name}:{func}", "kind": name,
                          "phase": phase, "calls_per_step": nc / steps, "ms_per_step": ms})
    rows = []
    for name in KINDS:
        t = table[name]
        total = t["forward"] + t["backward"] + t["optimizer"]
        rows.append({"kind": name, "forward_ms": t["forward"], "backward_ms": t["backward"],
                     "optimizer_ms": t["optimizer"], "total_ms": total,
                     "pct": 100 * total / step_ms})
    counted = sum(r["total_ms"] for r in rows)
    rows.append({"kind": "other", "forward_ms": None, "backward_ms": None,
                 "optimizer_ms": None, "total_ms": step_ms - counted,
                 "pct": 100 * (step_ms - counted) / step_ms})
    functions.sort(key=lambda f: -f["ms_per_step"])
    return rows, functions


def format_profile(p: dict[str, Any]) -> str:
    sh = p["shape"]
    title = (f"numpy_gpt float32 train step, {p['size']} ({sh['n_layer']}L/{sh['n_head']}H/"
             f"{sh['n_embd']}d, B={sh['B']}, T={sh['T']}, V={sh['vocab_size']}): "
             f"{p['step_ms_profiled']:.1f} ms/step profiled, {p['step_ms_unprofiled']:.1f} "
             f"ms unprofiled, mean of {p['steps']} steps")
    header = (f"{'kind':<16} {'forward ms':>11} {'backward ms':>12} {'optim ms':>9} "
              f"{'total ms':>9} {'% step':>7}")
    lines = [title, header]

    def f(x: float | None) -> str:
        return "-" if x is None or x == 0 else f"{x:.1f}"

    for r in p["rows"]:
        lines.append(f"{r['kind']:<16} {f(r['forward_ms']):>11} {f(r['backward_ms']):>12} "
                     f"{f(r['optimizer_ms']):>9} {r['total_ms']:9.1f} {r['pct']:6.1f}%")
    fw = sum(r["forward_ms"] or 0 for r in p["rows"])
    bw = sum(r["backward_ms"] or 0 for r in p["rows"])
    lines.append(f"{'total':<16} {fw:11.1f} {bw:12.1f} {'':>9} {p['step_ms_profiled']:9.1f} "
                 f"{100.0:6.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .sizes import SIZES

    ap = argparse.ArgumentParser(prog="python -m bench.profile", allow_abbrev=False,
                                 description="Break a numpy_gpt float32 training step down "
                                             "by layer kind with cProfile.")
    ap.add_argument("--size", default="6L-384", help=f"a named size: {', '.join(SIZES)} "
                                                     "(default 6L-384)")
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--threads", type=int, help="BLAS threads (re-executes with "
                                                "OPENBLAS_NUM_THREADS set; default: all)")
    ap.add_argument("--vs-torch", action="store_true",
                    help="also profile torch_gpt's eager CPU train step (torch.profiler) on "
                         "the same weights, inputs and threads, and print both side by side")
    ap.add_argument("--json", metavar="PATH", help="also write the breakdown as JSON")
    args = ap.parse_args(argv)
    if args.size not in SIZES:
        ap.error(f"unknown size {args.size!r}; choose from {list(SIZES)}")
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS sizes its thread pool when NumPy loads: set the variable and start over
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads),
               "OMP_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, "-m", "bench.profile", *sys.argv[1:]], env)
    result = profile_train_step(args.size, args.steps, args.warmup)
    from .env import env_info

    result["env"] = env_info(args.threads or int(os.environ.get("OPENBLAS_NUM_THREADS", "0"))
                             or os.cpu_count() or 1)
    print(format_profile(result))
    if args.vs_torch:
        from .torch_profile import format_side_by_side, profile_torch_train_step

        result["torch"] = profile_torch_train_step(args.size, args.steps, args.warmup, KINDS,
                                                   threads=args.threads)
        print()
        print(format_side_by_side(result, result["torch"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
