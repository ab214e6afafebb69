"""What kind of wrong: a learner's gradient compared with the reference's.

`diagnose(got, want, ...)` returns None when got is right, else one sentence naming the
mistake. The tests run in this order, first hit wins:

    shape:    transposed; a sum over batch/time missing; right rows but not the parameter's
              full shape; any other shape
    values:   a known mistake of this exercise (catalog.py computes what each one returns);
              wrong sign; off by a constant factor (named when it is 1/N, 2, sqrt(hs), ...);
              transposed (square matrices); another gradient's value (returned out of
              order); right only on the diagonal; else where it is wrong and by how much

Shapes in the cases all differ (B=2, T=3, C=5, ...), so an axis is named by its size.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

RTOL = 1e-7  # float64, same math in another order: agreement is ~1e-13


def close(a: np.ndarray, b: np.ndarray, rtol: float = RTOL) -> bool:
    """Relative agreement, scaled by the larger of the two arrays (zeros compare equal)."""
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-30)
    return float(np.abs(a - b).max(initial=0.0)) <= rtol * scale


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-30)
    return float(np.abs(a - b).max(initial=0.0)) / scale


def axis_names(shape: tuple[int, ...], dims: dict[str, int]) -> str:
    """(2, 3, 5) with dims B=2, T=3, C=5 -> '(B=2, T=3, C=5)'; a size that no letter, or
    more than one, owns stays a number."""
    by_size: dict[int, list[str]] = {}
    for letter, size in dims.items():
        by_size.setdefault(size, []).append(letter)
    names = [f"{by_size[s][0]}={s}" if len(by_size.get(s, [])) == 1 else str(s) for s in shape]
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def diagnose(got: Any, want: np.ndarray, *, dims: dict[str, int],
             factors: dict[str, tuple[float, str]] | None = None,
             known: list[tuple[str, np.ndarray]] | None = None,
             others: dict[str, np.ndarray] | None = None) -> str | None:
    """None when got equals want; else what is wrong. known: (message, what that mistake
    returns); others: the other gradients of the same backward, by name."""
    if got is None:
        return "returned None instead of an array"
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"returned {type(got).__name__}, not an array of numbers"
    if got.shape != want.shape:
        return _shape_diagnosis(got, want, dims)
    if not np.isfinite(got).all():
        return "contains NaN or inf"
    if close(got, want):
        return None
    for message, value in known or []:
        if value.shape == got.shape and close(got, value):
            return message
    if close(got, -want):
        return "wrong sign: the gradient points the other way (did you compute x - y as y - x?)"
    factor = _factor(got, want, factors or {})
    if factor:
        return factor
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and close(got, want.swapaxes(-1, -2)):
        return "transposed: swap the last two axes (check which side of the product each goes)"
    for name, value in (others or {}).items():
        if value is not None and value.shape == got.shape and close(got, value):
            return f"this is {name}'s value: are the gradients returned in the forward's order?"
    return _where_wrong(got, want, dims)


def _shape_diagnosis(got: np.ndarray, want: np.ndarray, dims: dict[str, int]) -> str:
    g, w = axis_names(got.shape, dims), axis_names(want.shape, dims)
    if got.ndim == want.ndim == 2 and got.shape == want.shape[::-1] and close(got.T, want):
        return f"transposed: shape {g}, expected {w}; the values are right, transpose it"
    extra = got.ndim - want.ndim
    if extra > 0:  # a sum over some axes missing?
        for axes in itertools.combinations(range(got.ndim), extra):
            summed = got.sum(axis=axes)
            names = axis_names(tuple(got.shape[a] for a in axes), dims).strip("(,)")
            if summed.shape == want.shape and close(summed, want):
                return (f"missing the sum over {names}: shape {g}, expected {w}; every row "
                        "uses the parameter once, so its gradient adds them all")
            if _is_prefix(summed, want):
                return (f"missing the sum over {names}, and the shape must be the "
                        f"parameter's: expected {w}, zero in unused rows")
    if _is_prefix(got, want):
        return (f"the used rows are right, but the gradient must have the parameter's full "
                f"shape {w} (got {g}): rows the batch did not use are 0")
    if got.size == want.size and close(got.reshape(want.shape), want):
        return f"right values in the wrong shape {g}: reshape to {w}"
    return f"wrong shape {g}, expected {w} (a gradient has the shape of what it differentiates)"


def _is_prefix(got: np.ndarray, want: np.ndarray) -> bool:
    return (got.ndim == want.ndim and got.ndim >= 1 and got.shape[1:] == want.shape[1:]
            and got.shape[0] < want.shape[0] and close(got, want[:got.shape[0]])
            and not want[got.shape[0]:].any())


def _factor(got: np.ndarray, want: np.ndarray, factors: dict[str, tuple[float, str]]
            ) -> str | None:
    """'off by a constant factor' when got = c * want for one c, named when c is known."""
    ww = float((want * want).sum())
    if ww == 0.0:
        return None
    c = float((got * want).sum()) / ww
    if c == 0.0 or not close(got, c * want, rtol=1e-6):
        return None
    named = {**factors, "2": (2.0, "counted twice"), "1/2": (0.5, "half of it")}
    for name, (value, why) in named.items():
        if abs(c - value) <= 1e-6 * abs(value):
            return f"off by a constant factor {c:.4g} = {name}: {why}"
    return f"off by a constant factor {c:.4g}: the direction is right, the scale is not"


def _where_wrong(got: np.ndarray, want: np.ndarray, dims: dict[str, int]) -> str:
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    bad = np.abs(got - want) > 1e-6 * scale
    err = rel_error(got, want)
    if not want.any():
        return f"should be all zeros here, got values up to {np.abs(got).max():.3g}"
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2]:
        eye = np.eye(got.shape[-1], dtype=bool)
        if not bad[..., eye].any():
            return ("right only on the diagonal: the off-diagonal entries (i != j) are "
                    "wrong, so a cross term is missing")
    where = f"{int(bad.sum())} of {bad.size} entries"
    if got.ndim >= 2:
        rows = np.flatnonzero(bad.reshape(-1, got.shape[-1]).any(axis=-1))
        n_rows = int(np.prod(got.shape[:-1]))
        where += f", in {len(rows)} of {n_rows} rows"
    return f"wrong values: {where} differ, max error {err:.2g} relative to the largest value"
