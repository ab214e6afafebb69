"""Place the reference's canonical tensors in somebody else's model, and read gradients back.

    placement = place(model, config, name_map)        # raises TwinError, one line
    load_weights(model, placement, params)            # canonical arrays -> the model
    grads = gather_grads(model, placement)            # the model's .grad -> canonical names

How a canonical name (DESIGN.md: transformer.h.{i}.attn.c_attn.weight, ...) finds its tensor:
  - identity: GPT-2/nanoGPT names (torch_gpt, nanoGPT, HF GPT2LMHeadModel), or the same names
    without the "transformer." prefix (HF GPT2Model);
  - Llama names, recognised without a map when identity does not fit: Hugging Face's
    (LlamaForCausalLM: model.embed_tokens, model.layers.{i}.self_attn.q_proj/k_proj/v_proj/
    o_proj, mlp.gate_proj/up_proj/down_proj, input_layernorm, post_attention_layernorm,
    model.norm, lm_head; also without "model.") and Meta's / llama2.c's (tok_embeddings,
    layers.{i}.attention.wq/wk/wv/wo, feed_forward.w1/w3/w2, attention_norm, ffn_norm, norm,
    output); separate q, k, v take c_attn's rows NH hs, KV hs, KV hs (grouped-query);
  - a user name map, a dict or JSON (file or text), canonical name -> the model's name, with
    "{i}" standing for the layer index; a module name ("transformer.h.{i}.ln_1":
    "blocks.{i}.norm1") maps its weight and bias at once. A list of three names is the
    split/fuse rule for separate q, k, v projections: each gets its third of c_attn's rows
    when weights are loaded, and their gradients are concatenated back into c_attn's; an
    item with "{h}" stands for every head in turn (one Linear per head, as in "Let's build
    GPT"). null: the model has no such tensor (a projection without bias in an otherwise
    biased model); the reference holds it at zero and its gradient is not compared. Names
    the map leaves out fall back to identity. Optional keys, next to "names": "transposed"
    (true, or model names/patterns stored (in, out)), "modules" (canonical module -> model
    module, for the activation hooks when the guess below is wrong) and "zero" (model
    parameters the reference has no place for, e.g. a bias on lm_head: set to zero, not
    compared). A flat dict is read as "names".
Layout: a weight held (in, out) is transposed on the way in and its gradient on the way out.
It is detected from HF's Conv1D modules, from the map's "transposed", or from the shapes:
a non-square weight shows its layout, and when every non-square weight in the blocks is
stored (in, out), the blocks' square ones are taken to be too (the report says so).
Detected from the model and said in the notes: tied or untied head (lm_head the same tensor
as wte, a different one, or absent), bias on or off (no bias parameter at all).
Refused, naming them: model parameters nothing places, canonical tensors nothing fills,
shapes that cannot match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from numpy_gpt.nn.config import GPTConfig, param_shapes

from .twins import TwinError

PROJECTIONS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_gate.weight",
               "mlp.c_fc.weight", "mlp.c_proj.weight", "lm_head.weight")  # Linear (out, in)
QKV = ("q", "k", "v")

# Llama-style names recognised without a name map: canonical module -> the model's
HF_LLAMA_NAMES = {
    "transformer.wte": "model.embed_tokens",
    "transformer.h.{i}.ln_1": "model.layers.{i}.input_layernorm",
    "transformer.h.{i}.attn.c_attn": [f"model.layers.{{i}}.self_attn.{x}_proj" for x in "qkv"],
    "transformer.h.{i}.attn.c_proj": "model.layers.{i}.self_attn.o_proj",
    "transformer.h.{i}.ln_2": "model.layers.{i}.post_attention_layernorm",
    "transformer.h.{i}.mlp.c_gate": "model.layers.{i}.mlp.gate_proj",
    "transformer.h.{i}.mlp.c_fc": "model.layers.{i}.mlp.up_proj",
    "transformer.h.{i}.mlp.c_proj": "model.layers.{i}.mlp.down_proj",
    "transformer.ln_f": "model.norm",
    "lm_head": "lm_head",
}
META_LLAMA_NAMES = {
    "transformer.wte": "tok_embeddings",
    "transformer.h.{i}.ln_1": "layers.{i}.attention_norm",
    "transformer.h.{i}.attn.c_attn": [f"layers.{{i}}.attention.w{x}" for x in "qkv"],
    "transformer.h.{i}.attn.c_proj": "layers.{i}.attention.wo",
    "transformer.h.{i}.ln_2": "layers.{i}.ffn_norm",
    "transformer.h.{i}.mlp.c_gate": "layers.{i}.feed_forward.w1",
    "transformer.h.{i}.mlp.c_fc": "layers.{i}.feed_forward.w3",
    "transformer.h.{i}.mlp.c_proj": "layers.{i}.feed_forward.w2",
    "transformer.ln_f": "norm",
    "lm_head": "output",
}
BUILTIN_SCHEMES = {  # label -> names, tried in this order when identity does not fit
    "Hugging Face Llama": HF_LLAMA_NAMES,
    "Hugging Face Llama without 'model.'": {
        k: [n.removeprefix("model.") for n in v] if isinstance(v, list)
        else v.removeprefix("model.") for k, v in HF_LLAMA_NAMES.items()},
    "Meta / llama2.c Llama": META_LLAMA_NAMES,
}


@dataclass(frozen=True)
class Slot:
    """Where one canonical tensor lives: one model parameter, or several (q, k, v; or every
    head's q, then k, then v) that split the canonical tensor's first axis into equal parts;
    none: the model has no such tensor and the reference holds it at zero."""

    canonical: str
    targets: tuple[str, ...]
    transposed: bool = False
    rows: tuple[int, ...] = ()  # each target's share of the first axis (q, k, v: unequal)


@dataclass
class Placement:
    slots: list[Slot]  # canonical (forward) order
    config: GPTConfig  # the suite's config with the detected head and bias
    modules: dict[str, str]  # probe name ("transformer.h.0.ln_1") -> model module name
    notes: list[str] = field(default_factory=list)  # what was detected, for the report
    zero: list[str] = field(default_factory=list)  # model parameters held at 0, uncompared

    @property
    def absent(self) -> list[str]:
        """Canonical tensors the model does not have (held at zero in the reference)."""
        return [s.canonical for s in self.slots if not s.targets]


def read_name_map(spec: str | dict | None) -> dict[str, Any]:
    """A name map from a dict, a JSON file or JSON text -> {"names", "transposed", "modules",
    "zero"}."""
    if spec is None:
        return {"names": {}, "transposed": [], "modules": {}, "zero": []}
    if isinstance(spec, str):
        text = spec
        if not spec.lstrip().startswith("{"):
            if not Path(spec).is_file():
                raise TwinError(f"--name-map {spec!r}: no such file (or JSON text)")
            text = Path(spec).read_text(encoding="utf-8")
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise TwinError(f"--name-map is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise TwinError("a name map must be a JSON object / dict")
    if "names" not in spec:
        spec = {"names": spec}
    unknown = sorted(set(spec) - {"names", "transposed", "modules", "zero"})
    if unknown:
        raise TwinError(f"name map: unknown key(s) {unknown}; use names, transposed, modules, "
                        "zero")
    return {"names": spec["names"], "transposed": spec.get("transposed", []),
            "modules": spec.get("modules", {}), "zero": spec.get("zero", [])}


def _expand(mapping: dict[str, Any], config: GPTConfig) -> dict[str, Any]:
    """{"transformer.h.{i}.x": "blocks.{i}.y"} -> one entry per layer; in a list, an item
    with "{h}" becomes one item per head ([q_{h}, k_{h}, v_{h}] -> q_0, q_1, .., v_last)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        for i in range(config.n_layer) if "{i}" in key else [None]:
            def fill(s: str | None, i: int | None = i) -> str | None:
                return s if i is None or s is None else s.replace("{i}", str(i))
            if isinstance(value, list):
                out[fill(key)] = [fill(v).replace("{h}", str(h)) for v in value
                                  for h in (range(config.n_head) if "{h}" in v else [0])]
            else:
                out[fill(key)] = fill(value)
    return out


def _by_parameter(names: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """Module entries ("transformer.h.0.ln_1": "blocks.0.norm1") -> their .weight and .bias."""
    out = {}
    for key, value in names.items():
        if key in full or key + ".weight" not in full:
            out[key] = value
            continue
        for leaf in (".weight", ".bias"):
            if key + leaf in full:
                out[key + leaf] = ([v + leaf for v in value] if isinstance(value, list)
                                   else None if value is None else value + leaf)
    return out


def _module_of(name: str) -> str:
    return name.rpartition(".")[0]


def _short(names: list[str], n: int = 6) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def place(model: nn.Module, config: GPTConfig, name_map: str | dict | None = None
          ) -> Placement:
    """Find every canonical tensor in `model` (see the module docstring); TwinError if not."""
    user = read_name_map(name_map)
    full = param_shapes(config.replace(bias=True, tie_weights=False))
    names = _by_parameter(_expand(user["names"], config), full)
    bad = sorted(set(names) - set(full))
    if bad:
        raise TwinError(f"name map: {_short(bad)} not reference name(s) (e.g. "
                        "transformer.h.{i}.attn.c_attn.weight)")
    own = dict(model.named_parameters(remove_duplicate=False))
    builtin = None if names else _builtin_scheme(own, full, config)
    if builtin is not None:
        scheme, names = builtin
    prefix = _prefix(set(own), full, names)
    wanted = {k: names.get(k, k.removeprefix(prefix)) for k in full}
    if builtin is not None:
        scheme += " names (recognised; no name map needed)"
    elif names:
        scheme = "your name map" + (" (identity for the rest)" if len(names) < len(full) else "")
    else:
        scheme = "GPT-2/nanoGPT" + (" without 'transformer.'" if prefix else "")
    notes = [f"names: {scheme}"]
    config, cfg_notes = _detect_head_and_bias(config, own, wanted)
    notes += cfg_notes
    shapes = param_shapes(config)

    missing = [k for k in shapes if not all(t in own for t in _as_tuple(wanted[k]))]
    if missing:
        raise TwinError(f"no model parameter for reference tensor(s) {_short(missing)} "
                        f"(the model has {_short(list(own), 4)}); pass --name-map")
    zero = list(_expand({z: z for z in user["zero"]}, config))
    unknown = [z for z in zero if z not in own]
    if unknown:
        raise TwinError(f"name map: zero names {_short(unknown)}, not parameters of the model")
    placed = {id(own[t]) for k in shapes for t in _as_tuple(wanted[k])}
    placed |= {id(own[z]) for z in zero}
    stray = [n for n, p in model.named_parameters() if id(p) not in placed]
    if stray:
        raise TwinError(f"cannot place model parameter(s) {_short(stray)}: no reference "
                        "tensor maps to them; pass --name-map")

    rows = {k: _rows(k, shape, len(_as_tuple(wanted[k])), config) for k, shape in shapes.items()}
    part_of = {t: (n, *shapes[k][1:]) for k in shapes
               for t, n in zip(_as_tuple(wanted[k]), rows[k])}
    transposed, layout_note = _layout(model, own, shapes, wanted, user["transposed"], config,
                                      part_of)
    if layout_note:
        notes.append(layout_note)
    slots = []
    for k in shapes:
        targets = _as_tuple(wanted[k])
        for t in targets:
            want = part_of[t][::-1] if t in transposed else part_of[t]
            if tuple(own[t].shape) != want:
                raise TwinError(f"{k}: the model's {t} has shape {tuple(own[t].shape)}, the "
                                f"reference needs {want} for this config")
        slots.append(Slot(k, targets, transposed=bool(targets) and targets[0] in transposed,
                          rows=rows[k]))
    modules = _modules(config, wanted, _expand(user["modules"], config))
    placement = Placement(slots, config, modules, notes, zero)
    if placement.absent:
        notes.append(f"absent from the model, held at zero: {_short(placement.absent)}")
    if zero:
        notes.append(f"not in the reference, held at zero: {_short(zero)}")
    return placement


def _builtin_scheme(own: dict[str, nn.Parameter], full: dict[str, Any], config: GPTConfig
                    ) -> tuple[str, dict[str, Any]] | None:
    """(label, names) of the first BUILTIN_SCHEMES entry whose names the model has for every
    weight, when the model does not use the canonical names; None otherwise."""
    weights = [k for k in full if not k.endswith(".bias") and not k.startswith("lm_head")]
    if all(k in own or k.removeprefix("transformer.") in own for k in weights):
        return None  # identity fits (or fails in its own words below)
    for label, scheme in BUILTIN_SCHEMES.items():
        relevant = {k: v for k, v in scheme.items()
                    if k.replace("{i}", "0") + ".weight" in full}
        names = _by_parameter(_expand(relevant, config), full)
        if all(t in own for k in weights for t in _as_tuple(names.get(k))):
            return label, names
    return None


def _rows(canonical: str, shape: tuple[int, ...], n: int, config: GPTConfig
          ) -> tuple[int, ...]:
    """How the first axis of a canonical tensor splits over its n targets: c_attn over
    separate q, k, v is NH hs, KV hs, KV hs rows (grouped-query); else n equal parts."""
    if n == 3 and canonical.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
        hs = config.head_size
        return config.n_head * hs, config.kv_heads * hs, config.kv_heads * hs
    return (shape[0] // n,) * n if n else ()


def _as_tuple(target: str | list[str] | None) -> tuple[str, ...]:
    """A map value as the model names it stands for; None (absent) stands for none."""
    if target is None:
        return ()
    return tuple(target) if isinstance(target, list) else (target,)


def _prefix(own: set[str], full: dict[str, Any], names: dict[str, Any]) -> str:
    """"" when the model uses the canonical names, "transformer." when it drops that prefix."""
    core = [k for k in full if k not in names and not k.endswith(".bias") and "lm_head" not in k]
    for prefix in ("", "transformer."):
        if all(k.removeprefix(prefix) in own for k in core):
            return prefix
    return ""  # reported below as unfilled tensors


def _detect_head_and_bias(config: GPTConfig, own: dict[str, nn.Parameter],
                          wanted: dict[str, Any]) -> tuple[GPTConfig, list[str]]:
    head, wte = wanted["lm_head.weight"], wanted["transformer.wte.weight"]
    if head in own and wte in own and own[head] is not own[wte]:
        tie, note = False, f"head: untied ({head} is its own parameter)"
    elif head in own:
        tie, note = True, f"head: tied ({head} is {wte})"
    else:
        tie, note = True, "head: tied (no lm_head parameter; the logits use wte)"
    notes = [note]
    biases = [wanted[k] for k in param_shapes(config.replace(bias=True)) if k.endswith(".bias")]
    has = [b for b in biases if all(t in own for t in _as_tuple(b))]
    bias = bool(has) if not has or len(has) == len(biases) else config.bias
    if bias != config.bias:
        notes.append(f"bias: {'on' if bias else 'off'} (the model has "
                     f"{'bias parameters' if bias else 'no bias parameter'})")
    return config.replace(tie_weights=tie, bias=bias), notes


def _layout(model: nn.Module, own: dict[str, nn.Parameter], shapes: dict[str, tuple],
            wanted: dict[str, Any], user_t: bool | list[str], config: GPTConfig,
            part_of: dict[str, tuple[int, ...]]) -> tuple[set[str], str]:
    """The model names of weights stored (in, out), and a note saying how that was found."""
    modules = dict(model.named_modules())
    projections = [t for k in shapes if k.endswith(PROJECTIONS) for t in _as_tuple(wanted[k])]
    if user_t is True:
        return set(projections), "layout: (in, out) weights (name map)"
    if user_t:
        listed = set(_expand({p: p for p in user_t}, config))
        return listed & set(projections), "layout: (in, out) for the weights the map lists"
    conv = {t for t in projections
            if type(modules.get(_module_of(t))).__name__ == "Conv1D"}
    if conv:
        return conv, "layout: Hugging Face Conv1D, (in, out) weights transposed"
    canon = {t: k for k in shapes for t in _as_tuple(wanted[k])}
    flipped, straight, square = set(), set(), set()
    for t in projections:
        a, b = tuple(own[t].shape), part_of[t]  # its part of c_attn if split
        if a == b[::-1] == b:
            square.add(t)
        elif a == b[::-1]:
            flipped.add(t)
        elif a == b:
            straight.add(t)
    block = {t for t in projections if not canon[t].startswith("lm_head")}
    if flipped & block and not straight & block:
        flipped |= square & block  # a square block weight follows the non-square ones
    if flipped:
        return flipped, "layout: (in, out) weights transposed (read from the non-square shapes)"
    return set(), ""


def _modules(config: GPTConfig, wanted: dict[str, Any], user: dict[str, str]
             ) -> dict[str, str]:
    """Probe name -> model module, from the modules that own the placed weights."""
    def owner(k: str) -> str | None:
        target = wanted.get(k + ".weight")
        return None if target is None or isinstance(target, list) else _module_of(target)

    def first(k: str) -> str | None:  # the module of q (or of the first head's q)
        target = _as_tuple(wanted.get(k + ".weight"))
        return _module_of(target[0]) if target else None

    def common(*names: str | None) -> str | None:
        if None in names:
            return None
        parts = [n.split(".") for n in names]
        shared = []
        for level in zip(*parts):
            if len(set(level)) > 1:
                break
            shared.append(level[0])
        return ".".join(shared)

    modules: dict[str, str | None] = {"transformer.wte": owner("transformer.wte"),
                                      "transformer.wpe": owner("transformer.wpe")}
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        qkv = wanted[h + "attn.c_attn.weight"]
        fused = owner(h + "attn.c_attn")
        block = common(owner(h + "ln_1"), owner(h + "ln_2"))
        attn = common(first(h + "attn.c_attn"), owner(h + "attn.c_proj"))
        mlp = common(owner(h + "mlp.c_fc"), owner(h + "mlp.c_proj"))
        modules[h + "ln_1"] = owner(h + "ln_1")
        modules[h + "attn.c_attn"] = fused
        if isinstance(qkv, list) and len(qkv) == len(QKV):  # per-head parts: not probed
            for name, t in zip(QKV, qkv):
                modules[f"{h}attn.c_attn[{name}]"] = _module_of(t)
        modules[h + "attn.c_proj"] = owner(h + "attn.c_proj")
        modules[h + "attn"] = attn if attn not in (block, modules[h + "attn.c_proj"]) else None
        modules[h + "ln_2"] = owner(h + "ln_2")
        modules[h + "mlp.c_gate"] = owner(h + "mlp.c_gate")
        modules[h + "mlp.c_fc"] = owner(h + "mlp.c_fc")
        modules[h + "mlp.c_proj"] = owner(h + "mlp.c_proj")
        modules[h + "mlp"] = mlp if mlp not in (block, modules[h + "mlp.c_proj"]) else None
    modules["transformer.ln_f"] = owner("transformer.ln_f")
    modules.update(user)
    return {k: v for k, v in modules.items() if v is not None}


@torch.no_grad()
def load_weights(model: nn.Module, placement: Placement, params: dict[str, np.ndarray]
                 ) -> None:
    """Copy canonical `params` into the model's parameters (in their dtype and device)."""
    own = dict(model.named_parameters(remove_duplicate=False))
    for slot in placement.slots:
        if not slot.targets:
            continue  # absent from the model: the reference holds it at zero
        cuts = np.cumsum(slot.rows)[:-1]  # (3C, C) -> 3 x (C, C); grouped: NH hs, 2 x KV hs
        parts = np.split(params[slot.canonical], cuts)
        for t, value in zip(slot.targets, parts):
            value = value.T if slot.transposed else value
            own[t].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    for z in placement.zero:
        own[z].zero_()


def gather_grads(model: nn.Module, placement: Placement) -> dict[str, np.ndarray | None]:
    """Each canonical tensor's gradient read from the model (None: the loss never reached
    it); q, k, v gradients are concatenated back into c_attn's (the fuse rule)."""
    own = dict(model.named_parameters(remove_duplicate=False))
    out: dict[str, np.ndarray | None] = {}
    for slot in placement.slots:
        if not slot.targets:
            continue  # absent from the model: nothing to compare
        grads = [own[t].grad for t in slot.targets]
        if any(g is None for g in grads):
            out[slot.canonical] = None
            continue
        arrays = [g.detach().to("cpu", torch.float64).numpy() for g in grads]
        out[slot.canonical] = np.concatenate(
            [a.T if slot.transposed else a for a in arrays], axis=0)
    return out
