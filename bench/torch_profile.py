"""torch_gpt's eager CPU train step broken down like numpy_gpt's (`bench.profile --vs-torch`).

The same training step the bench times (forward, loss.backward(), clip_grad_norm_, AdamW), on
the same weights and inputs, profiled with torch.profiler. Each phase is profiled on its own
(forward, backward, clipping + optimizer), and every ATen operator's self CPU time is put into
the layer kinds of bench/profile.py by its name:

    attention       scaled_dot_product_attention and its kernels (flash/math), bmm, softmax
    linear/matmul   linear, addmm, mm, matmul, and the bias-gradient sums of backward
    gelu, layernorm, embedding, dropout        gelu*, *layer_norm*, embedding*, dropout*
    softmax/loss    cross_entropy, log_softmax, nll_loss and their backward
    residual/glue   add / add_ (the residual stream, autograd's gradient accumulation)
    AdamW, clipping the optimizer phase, and clip_grad_norm_'s norms and scaling
    other           views, copies, allocation, autograd bookkeeping

Every event's self time (the time it spends outside the operators it calls) goes to the kind
of the nearest of itself and its callers that has one, so the kinds add up to the profiled
step without counting a nested call twice (aten::empty inside aten::layer_norm is layernorm's).
MKL's and OpenMP's threads work inside the operator that called them: their time is counted
there, as wall time on the calling thread.

Ref: PyTorch docs, "PyTorch Profiler" (torch.profiler.profile, key_averages).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

# (substring of the ATen op name, kind), first match wins; the phase decides AdamW/clipping
_OPS = (
    ("scaled_dot_product", "attention"), ("flash_attention", "attention"),
    ("efficient_attention", "attention"), ("bmm", "attention"), ("aten::_softmax", "attention"),
    ("aten::softmax", "attention"), ("masked_fill", "attention"),
    ("log_softmax", "softmax/loss"), ("nll_loss", "softmax/loss"),
    ("cross_entropy", "softmax/loss"),
    ("gelu", "gelu"), ("layer_norm", "layernorm"), ("embedding", "embedding"),
    ("dropout", "dropout"),
    ("addmm", "linear/matmul"), ("aten::mm", "linear/matmul"), ("aten::matmul", "linear/matmul"),
    ("aten::linear", "linear/matmul"), ("aten::sum", "linear/matmul"),
    ("aten::add", "residual/glue"),
)


def classify_op(name: str) -> str:
    """The layer kind of an ATen operator's name ("other" when none fits)."""
    for key, kind in _OPS:
        if key in name:
            return kind
    return "other"


def _attribute(prof: Any, steps: int) -> dict[str, dict[str, float]]:
    """ms per step by phase and kind: each event's self CPU time goes to the phase of its
    `phase:*` ancestor and to the kind of the nearest of itself and its ancestors that has one
    (so aten::empty inside aten::layer_norm counts as layernorm, aten::mm inside
    AddmmBackward0 as linear/matmul)."""
    out: dict[str, dict[str, float]] = {}
    for ev in prof.events():
        chain, node = [], ev
        while node is not None:
            chain.append(node.name)
            node = node.cpu_parent
        phase = next((n.split(":", 1)[1] for n in chain if n.startswith("phase:")), None)
        if phase is None or ev.name.startswith("phase:"):
            continue
        kind = phase if phase in ("clipping", "AdamW") else next(
            (k for k in map(classify_op, chain) if k != "other"), "other")
        out.setdefault(phase, {})
        out[phase][kind] = out[phase].get(kind, 0.0) + ev.self_cpu_time_total / 1e3 / steps
    return out


def profile_torch_train_step(size_name: str, steps: int, warmup: int, kinds: tuple[str, ...],
                             seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """Profile `steps` torch_gpt eager float32 CPU training steps; a row per kind of `kinds`
    (bench/profile.py's KINDS, passed in) and "other", as profile_train_step's."""
    from torch_gpt.optim import configure_optimizer

    from .backends import BACKENDS
    from .numpy_adapter import LR, MAX_NORM
    from .sizes import get_size
    from .torch_adapter import TorchAdapter

    size = get_size(size_name)
    adapter = TorchAdapter(BACKENDS["torch-cpu"], size, seed=seed, threads=threads)
    model = adapter.model
    opt = configure_optimizer(model, lr=LR, weight_decay=0.1)

    def forward() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        return model(adapter.idx, adapter.targets)[1]

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)

    for _ in range(warmup):
        forward().backward()
        clip()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        forward().backward()
        clip()
        opt.step()
    plain_ms = (time.perf_counter() - t0) * 1e3 / steps

    # one profiler session, each phase marked, so each op's time lands in its phase
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("phase:forward"):
                loss = forward()
            with record_function("phase:backward"):
                loss.backward()
            with record_function("phase:clipping"):
                clip()
            with record_function("phase:AdamW"):
                opt.step()
    phases = _attribute(prof, steps)

    rows = []
    for name in kinds:
        fw = phases.get("forward", {}).get(name, 0.0)
        bw = phases.get("backward", {}).get(name, 0.0)
        op = sum(phases.get(name, {}).values()) if name in ("clipping", "AdamW") else 0.0
        rows.append({"kind": name, "forward_ms": fw, "backward_ms": bw, "optimizer_ms": op,
                     "total_ms": fw + bw + op})
    other = sum(phases.get(p, {}).get("other", 0.0) for p in ("forward", "backward"))
    rows.append({"kind": "other", "forward_ms": None, "backward_ms": None,
                 "optimizer_ms": None, "total_ms": other})
    profiled = sum(r["total_ms"] for r in rows)
    for r in rows:
        r["pct"] = 100 * r["total_ms"] / profiled
    return {"size": size.name, "shape": size.shape(), "backend": "torch-cpu",
            "workload": "train", "steps": steps, "warmup": warmup,
            "step_ms_profiled": profiled, "step_ms_unprofiled": plain_ms,
            "threads": torch.get_num_threads(), "rows": rows}


def format_side_by_side(np_prof: dict[str, Any], torch_prof: dict[str, Any]) -> str:
    """The two breakdowns in one table: ms per step by kind and phase, and the ratio."""
    sh = np_prof["shape"]
    lines = [f"train step, {np_prof['size']} ({sh['n_layer']}L/{sh['n_head']}H/{sh['n_embd']}d, "
             f"B={sh['B']}, T={sh['T']}, V={sh['vocab_size']}), whole batch, ms per step: "
             f"numpy {np_prof['step_ms_profiled']:.1f} profiled / "
             f"{np_prof['step_ms_unprofiled']:.1f} plain; "
             f"torch {torch_prof['step_ms_profiled']:.1f}"
             f" profiled / {torch_prof['step_ms_unprofiled']:.1f} plain",
             f"{'kind':<16} {'numpy fwd':>9} {'bwd':>7} {'optim':>6} {'total':>7} "
             f"{'torch fwd':>9} {'bwd':>7} {'optim':>6} {'total':>7} {'numpy/torch':>11}"]

    def f(x: float | None, w: int) -> str:
        return f"{'-':>{w}}" if x is None or x == 0 else f"{x:{w}.1f}"

    torch_rows = {r["kind"]: r for r in torch_prof["rows"]}
    for a in np_prof["rows"]:
        b = torch_rows[a["kind"]]
        ratio = f"{a['total_ms'] / b['total_ms']:11.2f}" if b["total_ms"] > 0.05 else f"{'-':>11}"
        lines.append(f"{a['kind']:<16} {f(a['forward_ms'], 9)} {f(a['backward_ms'], 7)} "
                     f"{f(a['optimizer_ms'], 6)} {a['total_ms']:7.1f} {f(b['forward_ms'], 9)} "
                     f"{f(b['backward_ms'], 7)} {f(b['optimizer_ms'], 6)} {b['total_ms']:7.1f} "
                     f"{ratio}")
    return "\n".join(lines)
