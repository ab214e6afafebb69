"""How an outside GPT is called and what it returns, found by trying (`detect`), then used.

    conv = detect(model, idx, targets)        # idx, targets: (B,T) int64 tensors, T >= 2
    logits, loss = conv.call(model, idx, targets)
    conv.describe()  # "model(idx, targets) -> (logits, loss); loss over all positions; ..."

What is recognised:
  - the targets argument: a `labels=` keyword (Hugging Face), a `targets=` keyword, a second
    positional argument, or none (then the harness computes the loss from the logits);
  - the result: a logits tensor, a tuple/list (logits, loss), a dict or an object with
    `.logits` (and `.loss`); logits (B, T, V), or (B*T, V) as some models return with targets;
  - a loss kept elsewhere: a forward that takes targets but returns only logits and stores
    the loss in an attribute (llama2.c's `self.last_loss`) is read from that attribute, found
    as the scalar tensor attribute the call set; else the harness computes the loss;
  - the loss: over all positions (nanoGPT: logits[t] predicts targets[t]) or shifted by one
    inside the model (HF: logits[t] predicts labels[t + 1]); read off by comparing the
    model's loss with both, computed here from its own logits;
  - the ignore index: -100 or -1, by masking a few targets and seeing which loss comes back;
  - without targets: full logits, or only the last position's (nanoGPT's inference path);
  - a loss computed in lower precision than the logits (HF's ForCausalLMLoss casts float64
    logits to float32): the harness then computes the loss from the logits in their dtype,
    and the model's own loss is compared separately, at float32 tolerance.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .twins import TwinError

IGNORE_CANDIDATES = (-100, -1)


@dataclass
class Convention:
    targets_arg: str = "positional"  # "labels" | "targets" | "positional" | "none"
    output: str = "tensor"  # "tensor" | "tuple" | "dict" | "object"
    shifted: bool = False  # the model's loss predicts targets[t + 1] from logits[t]
    ignore_index: int | None = None  # found by trying -100 and -1; None: neither worked
    last_only: bool = False  # without targets the model returns only the last position
    own_loss: bool = True  # False: the harness computes the loss from the logits
    low_precision_loss: bool = False  # the model's loss has a lower dtype than its logits
    loss_attr: str | None = None  # the model stores its loss there (llama2.c: "last_loss")

    def call(self, model: nn.Module, idx: torch.Tensor, targets: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the model; (logits, loss). loss is the harness's own when the model gives
        none or gives it in lower precision; None without targets."""
        logits, loss = self.raw_call(model, idx, targets)
        if targets is not None and (loss is None or not self.own_loss):
            loss = harness_loss(logits, targets, self.shifted, self.ignore_index or -100)
        return logits, loss

    def raw_call(self, model: nn.Module, idx: torch.Tensor, targets: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if targets is None or self.targets_arg == "none":
            out = model(idx)
        elif self.targets_arg == "positional":
            out = model(idx, targets)
        else:
            out = model(idx, **{self.targets_arg: targets})
        logits, loss = unpack(out, self)
        if targets is not None and loss is None and self.loss_attr is not None:
            loss = getattr(model, self.loss_attr)
        return logits, loss

    def describe(self) -> str:
        arg = {"labels": "model(idx, labels=targets)", "targets": "model(idx, targets=targets)",
               "positional": "model(idx, targets)", "none": "model(idx)"}[self.targets_arg]
        result = {"tensor": "logits", "tuple": "(logits, loss)", "dict": "{'logits', 'loss'}",
                  "object": "an object with .logits/.loss"}[self.output]
        if not self.own_loss:
            loss = ("loss computed here from the logits (" +
                    ("the model's own is in lower precision" if self.low_precision_loss
                     else "the model returns none and stores none") + ")")
        elif self.loss_attr is not None:
            loss = f"loss read from model.{self.loss_attr} (the forward returns logits only)"
        else:
            loss = "loss from the model"
        where = "shifted by one inside the model (HF labels)" if self.shifted else \
            "over all positions (targets[t] for logits[t])"
        ignore = ("ignore index: none found" if self.ignore_index is None
                  else f"ignore index {self.ignore_index}")
        last = "last-position-only logits without targets" if self.last_only else \
            "full logits without targets"
        return f"{arg} -> {result}; {loss}, {where}; {ignore}; {last}"


def unpack(out: Any, conv: Convention | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, loss or None) from whatever forward returned; records the form in conv."""
    if isinstance(out, torch.Tensor):
        kind, logits, loss = "tensor", out, None
    elif isinstance(out, (tuple, list)):
        tensors = [t for t in out if isinstance(t, torch.Tensor)]
        big = [t for t in tensors if t.dim() >= 2]
        scalar = [t for t in tensors if t.dim() == 0]
        kind, logits, loss = "tuple", big[0] if big else None, scalar[0] if scalar else None
    elif isinstance(out, dict):
        kind, logits, loss = "dict", out.get("logits"), out.get("loss")
    elif hasattr(out, "logits"):
        kind, logits, loss = "object", out.logits, getattr(out, "loss", None)
    else:
        kind, logits, loss = "?", None, None
    if not isinstance(logits, torch.Tensor):
        raise TwinError(f"the model's forward returned {type(out).__name__}; expected logits, "
                        "(logits, loss), or a dict/object with logits")
    if conv is not None:
        conv.output = kind
    return logits, loss


def harness_loss(logits: torch.Tensor, targets: torch.Tensor, shifted: bool,
                 ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy in the logits' dtype, with the model's shift and ignore index."""
    logits = logits.reshape(*targets.shape, -1)  # (B*T, V) when a model flattens them
    if shifted:
        logits, targets = logits[:, :-1], targets[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=ignore_index)


def _targets_arg(model: nn.Module) -> str:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return "positional"
    names = [p.name for p in params]
    for name in ("labels", "targets"):
        if name in names:
            return name
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return "positional" if len(positional) >= 2 or any(
        p.kind == p.VAR_POSITIONAL for p in params) else "none"


def _scalar_attrs(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's plain attributes (not parameters or buffers) holding a 0-dim float tensor."""
    return {k: v for k, v in vars(model).items() if isinstance(v, torch.Tensor)
            and v.dim() == 0 and v.is_floating_point()}


def _stored_loss(model: nn.Module, before: dict[str, torch.Tensor]) -> str | None:
    """The attribute a forward with targets set to a scalar tensor (a stored loss), if one."""
    for name, value in _scalar_attrs(model).items():
        if before.get(name) is not value:
            return name
    return None


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the coarser of the two dtypes (float32 noise at worst)."""
    return bool(torch.isfinite(a)) and abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(b)))


@torch.no_grad()
def detect(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> Convention:
    """Find the model's convention by calling it (eval mode, no gradients); see the module
    docstring. Errors from the model propagate (the caller turns them into one line)."""
    conv = Convention(targets_arg=_targets_arg(model))
    before = _scalar_attrs(model)
    logits, loss = conv.raw_call(model, idx, targets)
    if loss is None and conv.targets_arg != "none":
        conv.loss_attr = _stored_loss(model, before)
        loss = None if conv.loss_attr is None else getattr(model, conv.loss_attr)
    if loss is None:
        conv.own_loss = False
        conv.ignore_index = -100  # the harness's own loss
    else:
        plain = harness_loss(logits.double(), targets, False, -100)
        shift = harness_loss(logits.double(), targets, True, -100)
        conv.shifted = _close(loss, shift) and not _close(loss, plain)
        if loss.dtype.itemsize < logits.dtype.itemsize:
            conv.own_loss, conv.low_precision_loss = False, True
        for ignore in IGNORE_CANDIDATES:
            trial = targets.clone()
            trial.view(-1)[1::2] = ignore  # every other position; the first stays counted
            try:
                _, got = conv.raw_call(model, idx, trial)
            except Exception:  # noqa: BLE001,S112 -- an out-of-range id: not this convention
                continue
            want = harness_loss(logits.double(), trial, conv.shifted, ignore)
            if got is not None and _close(got, want):
                conv.ignore_index = ignore
                break
    bare, _ = unpack(model(idx))
    conv.last_only = bare.dim() == 3 and bare.size(1) == 1 and idx.size(1) > 1
    return conv
