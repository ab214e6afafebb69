"""What a layer exercise is made of: its cases, its known mistakes, and the exercise itself.

catalog.py (GPT-2's layers) and llama_catalog.py (Llama's) fill these in; checker.py runs
them. Shapes in a case all differ (B=2, T=3, C=5, ...), so an axis mix-up cannot hide and a
diagnosis can name an axis by its size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Case:
    """One input set: tensors are differentiated (in the forward's argument order); static
    arguments are not. dims names the shape letters (their sizes all differ) for messages.
    part_sizes: the widths of a fused gradient's parts (Exercise.parts) when they differ, as
    grouped-query attention's q | k | v; empty: equal parts."""

    label: str
    tensors: dict[str, np.ndarray]
    static: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    factors: dict[str, tuple[float, str]] = field(default_factory=dict)  # name -> (value, why)
    part_sizes: tuple[int, ...] = ()


@dataclass
class Mistake:
    grad: int  # which returned gradient
    message: str
    value: np.ndarray  # what that mistake returns on this case


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    section: str  # docs/backprop.md's heading
    forward: str  # the learner file's function names
    backward: str
    grads: tuple[str, ...]  # what the backward returns, in order
    cases: Callable[[np.random.Generator], list[Case]]
    args: Callable[[Case], list]  # the forward's arguments for a case
    ref_forward: Callable
    ref_backward: Callable  # (dout, cache) -> tuple of gradients
    mistakes: Callable[[Case, Any, Any], list[Mistake]] = lambda case, dout, cache: []
    scalar_output: bool = False  # the forward returns a loss; backward(cache, dloss)
    parts: tuple[str, ...] = ()  # the single gradient's last axis splits into these parts


def tensor_args(case: Case) -> list:
    return list(case.tensors.values())


def n_factors(case: Case) -> dict[str, tuple[float, str]]:
    """The factors a sum over the N = B*T rows gets wrong, by name."""
    d = case.dims
    N = d["B"] * d["T"]
    return {"1/N": (1 / N, f"N = B*T = {N} rows: a gradient is a sum over rows, not a mean"),
            "N": (N, f"N = B*T = {N}: the loss's 1/N is already in dout"),
            "1/B": (1 / d["B"], "divided by B"), "1/T": (1 / d["T"], "divided by T")}


def norm_cases(rng: np.random.Generator, eps: float, bias: bool) -> list[Case]:
    """LayerNorm's (bias) and RMSNorm's cases: x, w (and b), three shapes."""
    cases = []
    for B, T, C in ((2, 3, 5), (1, 1, 4), (1, 4, 6)):
        # w and b away from 1 and 0, so a term that forgets them shows
        t = {"x": rng.standard_normal((B, T, C)), "w": 1 + 0.5 * rng.standard_normal(C)}
        if bias:
            t["b"] = 0.5 * rng.standard_normal(C)
        c = Case(f"B={B} T={T} C={C}", t, {"eps": eps}, {"B": B, "T": T, "C": C})
        c.factors = n_factors(c)
        cases.append(c)
    return cases

@dataclass(frozen=True)
class ModelSpec:
    """A whole-model exercise: the learner's file runs `forward(params, idx, targets,
    *forward_args)` with their own layers and `backward(cache)`; every gradient is compared
    with numpy_gpt.GPT's on `config`'s model. known(model, idx, targets, cache, want) gives,
    by parameter name, the known mistakes' (message, value) on that case; dims names the
    shape letters of the diagnosis for a case's (B, T)."""

    name: str
    forward: str
    backward: str
    config: Any  # GPTConfig
    forward_args: tuple
    cases: Callable[[np.random.Generator], list[tuple[str, np.ndarray, np.ndarray]]]
    known: Callable[..., dict[str, list[tuple[str, Any]]]]
    dims: Callable[[int, int], dict[str, int]]
    layers: tuple[str, ...]  # the layer exercises its file imports, for the "not yet" note
