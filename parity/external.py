"""Hold any GPT against the float64 NumPy reference: `python -m parity --twin SPEC`.

    report = check_twin("my_gpt.py:make_model", config, batch_size=2, seq_len=3)
    report.rows       # Rows as the case suite's: act:<probe>, logits, loss, grad:<name>
    report.notes      # what was detected: names, layout, head, bias, dtype, call convention
    report.findings   # first divergence, nearest-loss gradient, a named config mismatch

The steps: build the model from the factory (twins.py); place the canonical tensors in it
(namemap.py); draw float64 parameters where every tensor shows (reference.probe_params) and
load them; run in float64 when the model can (else float32, with float32 tolerances); find
the call convention by trying (conventions.py); run forward with hooks on the placed
modules, then backward; compare every probe, the logits, the loss and every gradient by
canonical name with numpy_gpt (logits, loss, gradients from numpy_gpt.GPT itself,
activations recomputed with its layers); explain the first failure (diverge.py).

Every problem before the comparison (bad spec, factory error, unplaceable names, a forward
that raises) is a TwinError: one line, exit status 2 at the command line.
Deliberately omits: train mode and dropout (the model is compared in eval mode), label
smoothing, and the AdamW/generation cases, which need the project's own APIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig
from numpy_gpt.nn.model import GPT as NumpyGPT

from .conventions import Convention, detect
from .diverge import (
    align_to,
    capture,
    first_divergence,
    mismatch,
    nearest_loss_gradient,
    probe_rows,
    rounding_hint,
)
from .harness import Context, Row, to_numpy
from .namemap import Placement, gather_grads, load_weights, place
from .reference import probe_params, reference_trace
from .tolerances import tolerance
from .twins import Factory, TwinError, build_twin, resolve_twin


@dataclass
class TwinReport:
    label: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    first_divergence: str | None = None  # the first disagreeing probe, e.g. "logits"
    config: GPTConfig | None = None  # the suite's config with the detected head and bias

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)


def check_twin(
    twin: str | Factory,
    config: GPTConfig,
    batch_size: int,
    seq_len: int,
    *,
    seed: int = 0,
    name_map: str | dict | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    label: str | None = None,
) -> TwinReport:
    """Compare the twin's model with the reference; see the module docstring. `label` names
    the rows' case (twin/<label>); default: the spec's."""
    factory, spec_label = (twin, getattr(twin, "__name__", "factory")) if callable(twin) \
        else resolve_twin(twin)
    label = label or spec_label
    if seq_len < 2:
        raise TwinError("a twin check needs seq_len >= 2 (to read the loss convention)")
    model = build_twin(factory, config, label)
    placement = place(model, config, name_map)
    config = placement.config
    rng = np.random.default_rng([seed, 15])
    params = probe_params(config, rng)
    for name in placement.absent:  # tensors the model does not have: zero in the reference
        params[name] = np.zeros_like(params[name])
    idx = rng.integers(0, config.vocab_size, (batch_size, seq_len))
    targets = rng.integers(0, config.vocab_size, (batch_size, seq_len))

    model, conv, dtype, dtype_note = _prepare(model, placement, params, idx, targets, dtype,
                                              device, label)
    notes = [*placement.notes, *getattr(model, "parity_notes", []), dtype_note,
             "call: " + conv.describe()]
    if placement.absent or placement.zero:
        notes.append("not compared: the gradients of the tensors held at zero")
    ctx = Context(dtype, device, config, batch_size, seq_len, seed=seed, case=f"twin/{label}")
    try:
        first, findings = _compare(ctx, model, placement, conv, params, idx, targets)
    except TwinError:
        raise
    except Exception as e:  # noqa: BLE001 -- e.g. a backward the model cannot run
        raise TwinError(f"--twin {label}: running the model failed: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return TwinReport(label, ctx.rows, notes, findings, first, config)


def _prepare(model: nn.Module, placement: Placement, params: dict[str, np.ndarray],
             idx: np.ndarray, targets: np.ndarray, dtype: str | None, device: str, label: str
             ) -> tuple[nn.Module, Convention, str, str]:
    """Move to float64 (or the asked dtype), load the weights, find the call convention;
    fall back to float32 when float64 fails. Returns (model, convention, dtype, note)."""
    tried = [dtype] if dtype else ["float64", "float32"]
    error = ""
    for dt in tried:
        try:
            model = model.to(device=device, dtype=getattr(torch, dt))
            load_weights(model, placement, params)
            t = torch.from_numpy(idx).to(device), torch.from_numpy(targets).to(device)
            conv = detect(model, *t)
        except TwinError:
            raise
        except Exception as e:  # noqa: BLE001 -- the model's own error, said in one line
            error = f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        if dt == "float64":
            note = "dtype: float64 (tolerances: float64)"
        elif dtype:
            note = "dtype: float32 as asked (tolerances: float32)"
        else:
            note = f"dtype: float32, float64 failed ({error}); tolerances: float32"
        return model, conv, dt, note
    raise TwinError(f"--twin {label}: the model's forward raised {error}")


def _compare(ctx: Context, model: nn.Module, placement: Placement, conv: Convention,
             params: dict[str, np.ndarray], idx: np.ndarray, targets: np.ndarray
             ) -> tuple[str | None, list[str]]:
    """Record every row in ctx; return (the first disagreeing probe, the findings)."""
    config, device = ctx.config, ctx.device
    ref = NumpyGPT.from_params(config, params, "float64")
    ref_logits, ref_loss, cache = ref.forward(idx, _reference_targets(targets, conv))
    ref_grads = ref.backward(cache)
    trace = reference_trace(params, config, idx)

    t_idx, t_tgt = torch.from_numpy(idx).to(device), torch.from_numpy(targets).to(device)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad(), capture(model, placement.modules) as seen:
        logits, loss = conv.call(model, t_idx, t_tgt)
    act_rows = probe_rows(ctx, seen, trace)
    ctx.check("logits", align_to(to_numpy(logits), ref_logits), ref_logits, "forward")
    ctx.check("loss", loss, ref_loss, "forward")
    first, line = first_divergence(ctx.rows)
    findings = [line]
    if not act_rows:
        findings.append("activations: none captured (none of the placed submodules ran); "
                        "outputs and gradients only")
    if any(not r.ok for r in ctx.rows):
        named = mismatch(seen, logits.detach(), params, config, idx,
                         tolerance(ctx.dtype, device, "forward"))
        if named:
            findings.append(named)
        elif hint := rounding_hint(ctx.rows, tolerance("float32", device, "forward")):
            findings.append(hint)

    _extra_forward_rows(ctx, model, conv, t_idx, t_tgt, ref, ref_logits)
    if not loss.requires_grad:
        ctx.fail("backward", "the loss does not require grad: nothing to differentiate")
    else:
        loss.backward()
        grads = gather_grads(model, placement)
        for name, g in grads.items():
            if g is None:
                ctx.fail(f"grad:{name}", "no gradient: the loss does not reach it", "grad")
            else:
                ctx.check(f"grad:{name}", g, ref_grads[name], "grad")
    nearest = nearest_loss_gradient(ctx.rows, forward_ok=first is None)
    if nearest:
        findings.append(nearest)
    return first, findings


@torch.no_grad()
def _extra_forward_rows(ctx: Context, model: nn.Module, conv: Convention, t_idx: torch.Tensor,
                        t_tgt: torch.Tensor, ref: NumpyGPT, ref_logits: np.ndarray) -> None:
    """Logits without targets (all or last position), the model's own low-precision loss,
    and the loss with ignored targets under the model's ignore index."""
    logits, _ = conv.call(model, t_idx)
    want = ref_logits[:, -1:] if conv.last_only else ref_logits
    ctx.check("logits (no targets" + (", last position)" if conv.last_only else ")"),
              logits, want, "forward")
    targets = t_tgt.cpu().numpy()
    if conv.low_precision_loss:
        _, own = conv.raw_call(model, t_idx, t_tgt)
        row = _loss_row(ctx, "loss (the model's own, float32 tolerance)", own, ref,
                        t_idx, targets, conv, ignored=None)
        row.dtype, row.tol = "float32", tolerance("float32", ctx.device, "forward")
        row.ok = bool(row.error <= row.tol)
    if conv.ignore_index is not None and conv.own_loss:
        trial = targets.copy()
        trial.reshape(-1)[1::2] = conv.ignore_index
        _, loss = conv.call(model, t_idx, torch.from_numpy(trial).to(t_idx.device))
        _loss_row(ctx, f"loss (ignore index {conv.ignore_index})", loss, ref, t_idx, trial,
                  conv, ignored=conv.ignore_index)


def _loss_row(ctx: Context, name: str, loss: torch.Tensor, ref: NumpyGPT, t_idx: torch.Tensor,
              targets: np.ndarray, conv: Convention, ignored: int | None) -> Row:
    """The reference loss for these targets under the model's shift and ignore index."""
    targets = np.where(targets == ignored, -100, targets) if ignored is not None else targets
    _, ref_loss, _ = ref.forward(t_idx.cpu().numpy(), _reference_targets(targets, conv))
    return ctx.check(name, loss, ref_loss, "forward")


def _reference_targets(targets: np.ndarray, conv: Convention) -> np.ndarray:
    """numpy_gpt's targets for the model's loss: under HF's shift, logits[t] predicts
    targets[t + 1] and the last position predicts nothing (-100)."""
    if not conv.shifted:
        return targets
    return np.concatenate([targets[:, 1:], np.full_like(targets[:, :1], -100)], axis=1)


def format_twin_report(report: TwinReport) -> list[str]:
    """The lines the CLI prints after the rows: detected facts, then the verdict's why."""
    lines = [f"twin {report.label}:"] + [f"  {n}" for n in report.notes]
    return lines + [f"  {f}" for f in report.findings]
