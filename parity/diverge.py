"""Where an outside GPT diverges from the reference: hooks, forward order, mismatch names.

    with capture(model, placement.modules) as seen:   # forward hooks on the placed modules
        logits, loss = conv.call(model, idx, targets)
    rows = probe_rows(ctx, seen, trace)               # "act:<probe>" rows, forward order
    findings = explain(rows, ...)                     # first divergence, nearest-loss gradient,
                                                      # and a config mismatch when one fits

A probe is a module's input or output (names in reference.py). Hooks keep the first call of
each module, detached. Captured tensors are reshaped to the reference's shape when the sizes
agree (a model may flatten (B, T) or keep a (1, T, C) position table), and the reference is
broadcast when it is a (T, C) table the model already expanded.

The first divergence is the first probe in forward order outside the tolerance: every probe
before it agrees, so the bug sits between that probe's input and it. For gradients, the
failing one nearest the loss is named (in reverse forward order), since the gradients below
it inherit its error. A usual config mismatch (the other GELU or none, another norm eps,
another attention scale, the other head, biases not applied; for Llama-shaped configs the
other RoPE pair layout, LayerNorm in place of RMSNorm or the reverse) is named when the
reference recomputed with it matches every probe the model exposed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig

from .harness import Context, Row, compare, to_numpy
from .reference import Variant, describe, reference_trace

INPUT_PROBES = ("ln_1", "ln_2", "ln_f", "attn.c_proj", "mlp.c_proj")  # also hook their input
NORM_NAMES = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
ROPE_PAIRS = {"halves": "(x[i], x[i + hs/2]), Hugging Face's rotate_half",
              "interleaved": "(x[2i], x[2i+1]), Meta's and llama2.c's complex pairs"}


@contextlib.contextmanager
def capture(model: nn.Module, modules: dict[str, str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward (pre-)hooks on the placed modules; yields {probe name: first value seen}."""
    seen: dict[str, torch.Tensor] = {}
    named = dict(model.named_modules())
    handles = []

    def keep(probe: str, value: Any) -> None:
        if isinstance(value, (tuple, list)) and value:
            value = value[0]  # HF attention returns (output, weights)
        if isinstance(value, torch.Tensor) and probe not in seen:
            seen[probe] = value.detach()

    for probe, name in modules.items():
        module = named.get(name)
        if module is None:
            continue
        handles.append(module.register_forward_hook(
            lambda _m, _a, out, probe=probe: keep(f"{probe} output", out)))
        if probe.endswith(INPUT_PROBES):
            handles.append(module.register_forward_pre_hook(
                lambda _m, args, kwargs, probe=probe: keep(
                    f"{probe} input", args[0] if args else next(iter(kwargs.values()), None)),
                with_kwargs=True))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def align_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The captured `a` in the reference's shape where the values line up; else unchanged."""
    if a.size == b.size:
        return a.reshape(b.shape)
    if a.ndim > b.ndim and a.shape[-b.ndim:] == b.shape:  # wpe expanded over the batch
        rows = a.reshape(-1, *b.shape)
        if np.all(rows == rows[:1]):
            return rows[0]
    return a


def probe_rows(ctx: Context, seen: dict[str, torch.Tensor], trace: dict[str, np.ndarray]
               ) -> list[Row]:
    """One "act:<probe>" row per probe the model exposed, in forward order."""
    rows = []
    for probe, ref in trace.items():
        if probe in seen and probe != "logits":
            rows.append(ctx.check(f"act:{probe}", align_to(to_numpy(seen[probe]), ref), ref,
                                  "forward"))
    return rows


def _agree_to(rows: list[Row]) -> float:
    return max((r.error for r in rows), default=0.0)


def first_divergence(rows: list[Row]) -> tuple[str | None, str]:
    """(probe, "first divergence: <probe>, error e; every tensor before it agrees to e'"),
    or (None, "forward: every compared tensor agrees ...")."""
    forward = [r for r in rows if r.name.startswith("act:") or r.name in ("logits", "loss")]
    for i, r in enumerate(forward):
        if not r.ok:
            probe = r.name.removeprefix("act:")
            before = (f"every tensor before it agrees to {_agree_to(forward[:i]):.0e}" if i
                      else "it is the first tensor compared")
            what = f"error {r.error:.1e}" if not r.note else r.note
            return probe, f"first divergence: {describe(probe)}, {what}; {before}"
    return None, f"forward: every compared tensor agrees (worst {_agree_to(forward):.0e})"


def nearest_loss_gradient(rows: list[Row], forward_ok: bool) -> str | None:
    """The failing gradient nearest the loss (rows are in forward order), or None. With a
    diverging forward every gradient downstream inherits it, which the line says."""
    grads = [r for r in rows if r.name.startswith("grad:")]
    bad = [r for r in grads if not r.ok]
    if not bad:
        return None
    r = bad[-1]
    what = f"error {r.error:.1e}" if not r.note else r.note
    why = ("; the forward agrees, so the backward itself is wrong there" if forward_ok
           else "; the forward diverges first, so fix that before reading these")
    return (f"gradients: {len(bad)} of {len(grads)} outside tolerance; nearest the loss: "
            f"{r.name.removeprefix('grad:')}, {what}{why}")


def rounding_hint(rows: list[Row], float32_tol: float) -> str | None:
    """When every failing forward row is within float32's tolerance, say so: the model
    likely computes part of its forward in float32 (a .float() cast, a float32 buffer)."""
    bad = [r for r in rows if not r.ok and r.category == "forward"]
    if bad and all(r.error <= float32_tol for r in bad) and bad[0].dtype == "float64":
        return (f"every forward error is at float32 rounding (worst {_agree_to(bad):.0e}): "
                "does the model compute in float32 somewhere (a .float() cast, a float32 "
                "buffer or constant)?")
    return None


def variants(config: GPTConfig) -> list[Variant]:
    """The usual config mismatches worth trying for this config."""
    hs = config.n_embd // config.n_head
    out = []
    if config.mlp == "gelu":
        out += [Variant(f"GELU '{g}' instead of '{config.gelu}'", gelu=g)
                for g in ("tanh", "exact") if g != config.gelu]
        out.append(Variant("the MLP has no activation (GELU missing)", gelu="none"))
        out.append(Variant("the MLP uses ReLU instead of GELU", gelu="relu"))
    norm = NORM_NAMES[config.norm]
    out += [Variant(f"{norm} eps {eps:g} instead of {config.layer_norm_eps:g}", eps=eps)
            for eps in (1e-5, 1e-6, 1e-8, 1e-12, 0.0) if eps != config.layer_norm_eps]
    other = "layernorm" if config.norm == "rmsnorm" else "rmsnorm"
    out.append(Variant(f"{NORM_NAMES[other]} instead of {norm} (the norms' mean is "
                       f"{'removed' if other == 'layernorm' else 'kept'})", norm=other))
    if config.position == "rope":
        layout = config.rope_layout
        flip = "interleaved" if layout == "halves" else "halves"
        out.append(Variant(f"RoPE pairs '{flip}' ({ROPE_PAIRS[flip]}) instead of '{layout}' "
                           f"({ROPE_PAIRS[layout]}): the same weights, another model; set "
                           f"rope_layout={flip!r}, or permute q/k rows (numpy_gpt/hf/llama.py)",
                           rope_layout=flip))
    scales = {"1/sqrt(n_embd)": config.n_embd ** -0.5, "1/head_size": 1.0 / hs,
              "1 (no scaling)": 1.0}
    out += [Variant(f"attention scores scaled by {k} instead of 1/sqrt(head_size)", scale=v)
            for k, v in scales.items() if abs(v - hs ** -0.5) > 1e-12]
    if not config.tie_weights:
        out.append(Variant("the logits use wte although lm_head is its own parameter "
                           "(tied in the forward, untied in the parameters)", head="wte"))
    if config.bias:
        out += [Variant(f"{which} biases are created but not applied", zero_bias=kind)
                for kind, which in (("all", "all"), ("linear", "the Linear layers'"),
                                    ("layernorm", "the LayerNorms'"))]
    return out


def mismatch(seen: dict[str, torch.Tensor], logits: torch.Tensor, params: dict[str, Any],
             config: GPTConfig, idx: np.ndarray, tol: float) -> str | None:
    """The one usual mismatch under which the reference matches every exposed probe."""
    exposed = {**{k: to_numpy(v) for k, v in seen.items()}, "logits": to_numpy(logits)}
    for v in variants(config):
        trace = reference_trace(params, config, idx, v)
        errors = [compare("", k, align_to(exposed[k], trace[k]), trace[k], "", "", tol).error
                  for k in trace if k in exposed]
        if errors and all(e <= tol for e in errors):
            return (f"looks like a config mismatch: {v.label} (with it the reference matches "
                    f"all {len(errors)} compared activations to {max(errors):.0e})")
    return None
