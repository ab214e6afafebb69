"""The exercises: what the learner writes, the shapes it is checked on, and known mistakes.

Each layer exercise names the learner's forward and backward, the package's forward and
backward (the reference: the solutions are numpy_gpt.nn.layers themselves), a few cases (small
shapes that all differ, so an axis mix-up cannot hide, plus the edge cases T=1 and B=1,
repeated token ids, ignored targets), and, for the diagnosis, the common mistakes: the exact
wrong gradient each mistake produces on a case, and the constant factors worth naming.

The order is docs/backprop.md's teaching order: GPT-2's layers, then "model", the whole GPT's
backward (modelcheck.py); then the Llama blocks' layers (llama_catalog.py) and "llama", the
whole Llama-shaped backward (llama_model.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.layers import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)
from ..nn.layers.linear import LinearCache
from .llama_catalog import LLAMA_LAYER_EXERCISES
from .spec import Case, Exercise, Mistake, n_factors, norm_cases, tensor_args

EPS = 1e-5  # LayerNorm's eps in every case
DLOSS = 0.75  # the cross-entropy exercise's dL/dloss: 1/0.75 is not a factor named elsewhere


# ---------------------------------------------------------------------------- linear

def linear_dims(B: int, T: int, n_in: int, n_out: int) -> dict[str, int]:
    return {"B": B, "T": T, "in": n_in, "out": n_out}


def _linear_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, i, o, bias in ((2, 3, 4, 5, True), (1, 1, 4, 5, True), (2, 3, 4, 4, True),
                             (3, 2, 5, 4, False)):
        t = {"x": rng.standard_normal((B, T, i)), "w": rng.standard_normal((o, i))}
        if bias:
            t["b"] = rng.standard_normal(o)
        c = Case(f"B={B} T={T} in={i} out={o}" + ("" if bias else " no bias"), t,
                 dims=linear_dims(B, T, i, o))
        c.factors = n_factors(c)
        cases.append(c)
    return cases


def _linear_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    x, w = case.tensors["x"], case.tensors["w"]
    out = []
    if w.shape[0] == w.shape[1]:
        out.append(Mistake(0, "dx used w.T: in y = x wᵀ, x is multiplied by wᵀ, so dx = dout w",
                           dout @ w.T))
    d2, x2 = dout.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])
    out.append(Mistake(1, "dw from the first row only: dw = doutᵀ x sums over all B*T rows",
                       np.outer(d2[0], x2[0])))
    if "b" in case.tensors:
        out.append(Mistake(2, "db from the first row only: every row adds b, so db sums dout "
                              "over all B*T rows", d2[0]))
    return out


LINEAR = Exercise(
    "linear", "the Linear layer y = x wᵀ + b", "2. The output head, and the first fan-out",
    "linear_forward", "linear_backward", ("dx", "dw", "db"), _linear_cases,
    lambda c: [c.tensors["x"], c.tensors["w"], c.tensors.get("b")],
    linear_forward, linear_backward, _linear_mistakes)


# ---------------------------------------------------------------------------- layernorm

def _layernorm_cases(rng: np.random.Generator) -> list[Case]:
    return norm_cases(rng, EPS, bias=True)


def _layernorm_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    n, rstd, w = cache.n, cache.rstd, cache.w
    g = dout * w

    def m(v: np.ndarray) -> np.ndarray:
        return v.mean(axis=-1, keepdims=True)

    return [
        Mistake(0, "dx has only the direct path rstd*g: x also moves the mean and the "
                   "variance (terms 2 and 3)", rstd * g),
        Mistake(0, "dx misses the path through the variance: subtract n * mean_C(g n)",
                rstd * (g - m(g))),
        Mistake(0, "dx misses the path through the mean: subtract mean_C(g)",
                rstd * (g - n * m(g * n))),
        Mistake(0, "dx forgot the scale w: the gradient wrt n is g = dout * w, not dout",
                rstd * (dout - m(dout) - n * m(dout * n))),
    ]


LAYERNORM = Exercise(
    "layernorm", "LayerNorm", "3. LayerNorm", "layernorm_forward", "layernorm_backward",
    ("dx", "dw", "db"), _layernorm_cases,
    lambda c: [c.tensors["x"], c.tensors["w"], c.tensors["b"], c.static["eps"]],
    layernorm_forward, layernorm_backward, _layernorm_mistakes)


# ---------------------------------------------------------------------------- GELU

def _gelu_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(f"B={B} T={T} C={C}", {"x": 2 * rng.standard_normal((B, T, C))},
                 dims={"B": B, "T": T, "C": C})
            for B, T, C in ((2, 3, 4), (1, 1, 5))]


def _gelu_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    x = case.tensors["x"]
    s, a = np.sqrt(2 / np.pi), 0.044715
    t = np.tanh(s * (x + a * x**3))
    local = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * s * (1 + 3 * a * x**2)
    return [
        Mistake(0, "returned dy/dx itself: multiply by dout (the chain rule)", local),
        Mistake(0, "only the 0.5 (1 + t) term: x also reaches y through t = tanh(u)",
                dout * 0.5 * (1 + t)),
        Mistake(0, "du/dx is missing its 3 A x² term: u = S (x + A x³)",
                dout * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * s)),
        Mistake(0, "used tanh'(u) = 1 - t instead of 1 - t²",
                dout * (0.5 * (1 + t) + 0.5 * x * (1 - t) * s * (1 + 3 * a * x**2))),
    ]


GELU = Exercise(
    "gelu", "GELU, GPT-2's tanh form", "6. The MLP and GELU", "gelu_tanh_forward",
    "gelu_tanh_backward", ("dx",), _gelu_cases, tensor_args, gelu_tanh_forward,
    lambda d, c: (gelu_tanh_backward(d, c),), _gelu_mistakes)


# ---------------------------------------------------------------------------- cross-entropy

def _ce_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, V, ignore in ((2, 3, 5, ((0, 1), (1, 2))), (1, 1, 6, ()), (2, 4, 7, ((1, 0),))):
        targets = rng.integers(0, V, (B, T))
        for b, t in ignore:
            targets[b, t] = -100
        n_valid, N = int((targets != -100).sum()), B * T
        label = f"B={B} T={T} V={V}" + (f", {len(ignore)} ignored targets" if ignore else "")
        c = Case(label, {"logits": 3 * rng.standard_normal((B, T, V))}, {"targets": targets},
                 {"B": B, "T": T, "V": V})
        c.factors = {
            "1/dloss": (1 / DLOSS, "dloss is missing: multiply by it (the chain rule)"),
            "N_valid": (n_valid, f"forgot the mean's 1/N_valid (N_valid = {n_valid})"),
        }
        if n_valid != N:
            c.factors["N_valid/N"] = (n_valid / N, f"divided by N = {N}; the mean is over "
                                                   f"the N_valid = {n_valid} counted targets")
        cases.append(c)
    return cases


def _ce_mistakes(case: Case, dout: float, cache: Any) -> list[Mistake]:
    probs, t, valid, n_valid = cache.probs, cache.targets, cache.valid, cache.n_valid
    shape = cache.shape
    kept = probs.copy()
    rows = np.flatnonzero(valid)
    kept[rows, t[rows]] -= 1.0
    kept *= dout / n_valid  # p - onehot on every row, ignored ones included
    diag_only = np.zeros_like(probs)
    diag_only[rows, t[rows]] = probs[rows, t[rows]] - 1.0
    diag_only *= dout / n_valid
    out = [Mistake(0, "right only on the target column (the diagonal of the softmax "
                      "Jacobian): every class c gets p_c, the target gets p_t - 1",
                   diag_only.reshape(shape))]
    if not valid.all():
        out.append(Mistake(0, "the ignored positions (target -100) must pass no gradient: "
                              "set their rows to 0", kept.reshape(shape)))
    return out


CROSS_ENTROPY = Exercise(
    "cross_entropy", "softmax + cross-entropy", "1. Cross-entropy with softmax",
    "cross_entropy_forward", "cross_entropy_backward", ("dlogits",), _ce_cases,
    lambda c: [c.tensors["logits"], c.static["targets"]], cross_entropy_forward,
    lambda d, c: (cross_entropy_backward(c, d),), _ce_mistakes, scalar_output=True)


# ---------------------------------------------------------------------------- attention

def _attention_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, NH, hs in ((2, 3, 2, 4), (1, 1, 2, 4), (1, 5, 1, 3)):
        C = NH * hs
        c = Case(f"B={B} T={T} NH={NH} hs={hs}", {"qkv": rng.standard_normal((B, T, 3 * C))},
                 {"n_head": NH}, {"B": B, "T": T, "C": C, "3C": 3 * C})
        c.factors = {"sqrt(hs)": (np.sqrt(hs), "the 1/sqrt(hs) of S = q kᵀ/√hs is missing"),
                     "1/sqrt(hs)": (1 / np.sqrt(hs), "1/sqrt(hs) applied twice")}
        cases.append(c)
    return cases


def attention_variant(dout: np.ndarray, cache: Any, *, softmax_diag_only: bool = False,
                      dk_untransposed: bool = False, dv_untransposed: bool = False
                      ) -> np.ndarray:
    """The attention backward written plainly, with a known mistake switched on."""
    q, k, v, P, _, scale, _ = cache
    B, NH, T, hs = q.shape
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    dv = (P if dv_untransposed else P.swapaxes(-1, -2)) @ dy
    dP = dy @ v.swapaxes(-1, -2)
    dS = P * dP if softmax_diag_only else P * (dP - (dP * P).sum(-1, keepdims=True))
    dk = (dS if dk_untransposed else dS.swapaxes(-1, -2)) @ q * scale
    dq = dS @ k * scale

    def merge(z: np.ndarray) -> np.ndarray:
        return z.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)

    return np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)


def _attention_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    return [
        Mistake(0, "right only on the diagonal of the softmax Jacobian: dS = P ⊙ dP keeps "
                   "diag(P) and drops -P Pᵀ; subtract rowsum(dP ⊙ P) first",
                attention_variant(dout, cache, softmax_diag_only=True)),
        Mistake(0, "dk used dS where dSᵀ is needed: S = q kᵀ, so dk = dSᵀ q * scale",
                attention_variant(dout, cache, dk_untransposed=True)),
        Mistake(0, "dv used P where Pᵀ is needed: y = P v, so dv = Pᵀ dy",
                attention_variant(dout, cache, dv_untransposed=True)),
    ]


ATTENTION = Exercise(
    "attention", "causal self-attention", "7. Causal self-attention", "attention_forward",
    "attention_backward", ("dqkv",), _attention_cases,
    lambda c: [c.tensors["qkv"], c.static["n_head"]], attention_forward,
    lambda d, c: (attention_backward(d, c),), _attention_mistakes, parts=("q", "k", "v"))


# ---------------------------------------------------------------------------- embedding

def _embedding_cases(rng: np.random.Generator) -> list[Case]:
    V, C, block = 7, 4, 5
    cases = []
    for label, idx in (("B=2 T=3, repeated ids", np.array([[1, 4, 1], [4, 4, 0]])),
                       ("B=1 T=1", np.array([[3]])),
                       ("B=3 T=2, one id everywhere", np.full((3, 2), 6))):
        B, T = idx.shape
        tensors = {"wte": rng.standard_normal((V, C)), "wpe": rng.standard_normal((block, C))}
        c = Case(label, tensors, {"idx": idx},
                 {"B": B, "T": T, "V": V, "C": C, "block_size": block})
        c.factors = n_factors(c)
        cases.append(c)
    return cases


def _embedding_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    idx = case.static["idx"]
    V, C = case.tensors["wte"].shape
    overwrite = np.zeros((V, C))
    overwrite[idx.reshape(-1)] = dout.reshape(-1, C)  # fancy assignment: the last one wins
    dwpe_first = np.zeros_like(case.tensors["wpe"])
    dwpe_first[:idx.shape[1]] = dout[0]
    return [
        Mistake(0, "repeated token ids overwrote each other: every occurrence must add its "
                   "row (np.add.at), plain assignment keeps only the last", overwrite),
        Mistake(1, "dwpe is missing the sum over the batch: dwpe[t] = sum_b dout[b, t]",
                dwpe_first),
    ]


EMBEDDING = Exercise(
    "embedding", "token + position embedding", "8. Embeddings: a scatter-add",
    "embedding_forward", "embedding_backward", ("dwte", "dwpe"), _embedding_cases,
    lambda c: [c.static["idx"], c.tensors["wte"], c.tensors["wpe"]], embedding_forward,
    embedding_backward, _embedding_mistakes)


# ---------------------------------------------------------------------------- dropout

def _dropout_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, C, p in ((2, 3, 4, 0.25), (1, 1, 6, 0.4)):
        mask = rng.random((B, T, C)) >= p
        mask.flat[0], mask.flat[1] = True, False  # at least one kept, one dropped
        c = Case(f"B={B} T={T} C={C} p={p}", {"x": rng.standard_normal((B, T, C))},
                 {"mask": mask, "p": p}, {"B": B, "T": T, "C": C})
        c.factors = {"1-p": (1 - p, "the 1/(1-p) scale is missing"),
                     "1/(1-p)": (1 / (1 - p), "the 1/(1-p) scale is applied twice")}
        cases.append(c)
    return cases


def _dropout_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    mask, p = case.static["mask"], case.static["p"]
    return [Mistake(0, "dropped units passed gradient: multiply by the mask", dout / (1 - p)),
            Mistake(0, "used the dropped units instead of the kept ones (~mask)",
                    dout * ~mask / (1 - p))]


DROPOUT = Exercise(
    "dropout", "dropout", "5. Dropout", "dropout_forward", "dropout_backward", ("dx",),
    _dropout_cases, lambda c: [c.tensors["x"], c.static["mask"], c.static["p"]],
    dropout_forward, lambda d, c: (dropout_backward(d, c),), _dropout_mistakes)


# ---------------------------------------------------------------------------- residual

def residual_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """The reference residual: y = x + linear(x), composed from the package's Linear layer."""
    branch, cache = linear_forward(x, w, b)
    return x + branch, cache


def residual_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """dx = dout (skip path) + the branch's dx: fan-out is a sum (model.py's `dx += da`)."""
    dx_branch, dw, db = linear_backward(dout, LinearCache(cache[0], cache[1], True))
    return dout + dx_branch, dw, db


def _residual_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for B, T, C in ((2, 3, 4), (1, 1, 5)):
        c = Case(f"B={B} T={T} C={C}", {"x": rng.standard_normal((B, T, C)),
                                         "w": rng.standard_normal((C, C)),
                                         "b": rng.standard_normal(C)},
                 dims={"B": B, "T": T, "C": C})
        c.factors = n_factors(c)
        cases.append(c)
    return cases


def _residual_mistakes(case: Case, dout: np.ndarray, cache: Any) -> list[Mistake]:
    w = case.tensors["w"]
    return [Mistake(0, "dx is missing the skip path: y = x + f(x) uses x twice, so "
                       "dx = dout + (the branch's dx)", dout @ w),
            Mistake(0, "dx is only the skip path: add the branch's dx = dout w", dout.copy())]


RESIDUAL = Exercise(
    "residual", "a residual connection (fan-out)", "4. Residual connections: fan-out is a sum",
    "residual_forward", "residual_backward", ("dx", "dw", "db"), _residual_cases, tensor_args,
    residual_forward, residual_backward, _residual_mistakes)


GPT2_LAYER_EXERCISES = {e.name: e for e in (LINEAR, LAYERNORM, GELU, CROSS_ENTROPY, ATTENTION,
                                            EMBEDDING, DROPOUT, RESIDUAL)}
LAYER_EXERCISES = {**GPT2_LAYER_EXERCISES, **LLAMA_LAYER_EXERCISES}
MODEL_NAME = "model"
MODEL_TITLE = "the whole GPT's backward, with your own layers"
MODEL_SECTION = "The forward pass, for reference"
LLAMA_NAME = "llama"
LLAMA_TITLE = "the whole Llama backward, with your own layers"
LLAMA_SECTION = "10e. The whole Llama-shaped model"
# the whole-model exercises: name -> (title, docs/backprop.md's heading, the backward to write)
MODEL_EXERCISES = {MODEL_NAME: (MODEL_TITLE, MODEL_SECTION, "gpt_backward"),
                   LLAMA_NAME: (LLAMA_TITLE, LLAMA_SECTION, "llama_backward")}
ORDER = (*GPT2_LAYER_EXERCISES, MODEL_NAME, *LLAMA_LAYER_EXERCISES, LLAMA_NAME)


def exercise_title(name: str) -> str:
    return LAYER_EXERCISES[name].title if name in LAYER_EXERCISES else MODEL_EXERCISES[name][0]
