"""torch_gpt's eager CPU train step broken down like numpy_gpt's (`bench.profile --vs-torch`).

The same training step the bench times (forward, loss.backward(), clip_grad_norm_, AdamW), on
the same weights and inputs, profiled with torch.profiler. Each phase is profiled on its own
(forward, backward, clipping + optimizer), and every ATen operator's self CPU time is put into
the layer kinds of bench/profile.py by its name:

    attention       scaled_dot_product_attention and its kernels (flash/math; grouped-query
                    attention too: enable_gqa), bmm, softmax
    linear/matmul   linear, addmm, mm, matmul
    gelu, layernorm, embedding, dropout        gelu*, *layer_norm*, embedding*, dropout*
    rmsnorm         rms_norm (nn.RMSNorm) and its backward
    rope            the operators torch_gpt's apply_rope calls (muls, adds, cat or stack:
                    no operator names it, so its Python frame does)
    swiglu          silu and its backward, and the gate x up product of MLP.hidden
    softmax/loss    cross_entropy, log_softmax, nll_loss and their backward
    residual/glue   add / add_ (the residual stream, autograd's gradient accumulation)
    AdamW, clipping the optimizer phase, and clip_grad_norm_'s norms and scaling
    other           views, copies, allocation, autograd bookkeeping

Every event's self time (the time it spends outside the operators it calls) goes to the kind
of the nearest of itself and its callers that has one, so the kinds add up to the profiled
step without counting a nested call twice (aten::empty inside aten::layer_norm is layernorm's).
The callers include torch_gpt's Python frames (the profiler runs with_stack; their own time
is Python overhead, not counted, as before). In backward, an autograd node (MulBackward0,
AddmmBackward0) has the kind of the forward operator that recorded it, matched by sequence
number: RoPE's MulBackward0 is rope's, RMSNorm's weight-gradient sum rmsnorm's, a bias
gradient's sum linear/matmul's. The generic add (residual/glue) yields to a caller's kind (an
add inside apply_rope is rope's), except the gradient accumulation autograd's engine does
itself (an add directly under an evaluate_function), which is the fan-out sum numpy_gpt's
model.py writes out, residual/glue in both.
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
    ("gelu", "gelu"), ("layer_norm", "layernorm"), ("rms_norm", "rmsnorm"), ("silu", "swiglu"),
    ("embedding", "embedding"), ("dropout", "dropout"),
    ("addmm", "linear/matmul"), ("aten::mm", "linear/matmul"), ("aten::matmul", "linear/matmul"),
    ("aten::linear", "linear/matmul"),
)
GENERIC = ("aten::add", "residual/glue")  # yields to a caller's kind (see the docstring)
# torch_gpt functions (Python frames, "…/torch_gpt/layers.py(80): apply_rope") whose unnamed
# operators are a kind's: RoPE's arithmetic, SwiGLU's gate x up product (GELU's MLP.hidden
# holds only linear and gelu, both named first)
_FRAMES = (("torch_gpt/layers.py", "apply_rope", "rope"),
           ("torch_gpt/model.py", "hidden", "swiglu"))
ENGINE = "autograd::engine::evaluate_function"


def classify_op(name: str) -> str:
    """The layer kind of an ATen operator's name ("other" when none fits)."""
    for key, kind in (*_OPS, GENERIC):
        if key in name:
            return kind
    return "other"


def classify_frame(name: str) -> str:
    """The layer kind of a Python frame's profiler name ("other" for every frame but
    _FRAMES'): "/x/torch_gpt/layers.py(80): apply_rope" -> "rope"."""
    where, _, func = name.replace("\\", "/").rpartition(": ")
    for path, fn, kind in _FRAMES:
        if func == fn and path in where:
            return kind
    return "other"


def _event_kind(ev: Any, forward_kinds: dict[int, str]) -> str:
    """The kind of the nearest of `ev` and its callers that has one (see the docstring)."""
    if GENERIC[0] in ev.name and ev.cpu_parent is not None and \
            ev.cpu_parent.name.startswith(ENGINE):
        return GENERIC[1]  # autograd's own gradient accumulation: the fan-out sum
    node = ev
    while node is not None:
        if node.is_python_function:
            kind = classify_frame(node.name)
        elif not node.name.startswith("aten::") and node.sequence_nr in forward_kinds:
            kind = forward_kinds[node.sequence_nr]  # an autograd node: its forward's kind
        else:
            kind = classify_op(node.name) if GENERIC[0] not in node.name else "other"
        if kind != "other":
            return kind
        node = node.cpu_parent
    return GENERIC[1] if GENERIC[0] in ev.name else "other"


def _phase(ev: Any) -> str | None:
    node = ev
    while node is not None:
        if node.name.startswith("phase:"):
            return node.name.split(":", 1)[1]
        node = node.cpu_parent
    return None


def _attribute(prof: Any, steps: int) -> dict[str, dict[str, float]]:
    """ms per step by phase and kind: each operator event's self CPU time goes to the phase
    of its `phase:*` ancestor and to its kind (_event_kind: aten::empty inside
    aten::layer_norm counts as layernorm, aten::mm inside AddmmBackward0 as linear/matmul,
    the muls of RoPE's MulBackward0 as rope). Python frames' own time is not counted."""
    events = sorted((ev for ev in prof.events() if not ev.name.startswith("phase:")),
                    key=lambda ev: ev.time_range.start)
    phases = {id(ev): _phase(ev) for ev in events}
    forward_kinds: dict[int, str] = {}  # sequence number -> the kind of the op recording it
    for ev in events:  # the last op of a sequence number is the one that made its node
        if phases[id(ev)] == "forward" and not ev.is_python_function and ev.sequence_nr >= 0:
            forward_kinds[ev.sequence_nr] = _event_kind(ev, {})
    out: dict[str, dict[str, float]] = {}
    for ev in events:
        phase = phases[id(ev)]
        if phase is None or ev.is_python_function:
            continue
        kind = phase if phase in ("clipping", "AdamW") else _event_kind(ev, forward_kinds)
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
    # with_stack: torch_gpt's Python frames join the call chains (RoPE's ops have no name)
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
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
