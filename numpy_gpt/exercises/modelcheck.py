"""The whole-model exercises' check: a model's backward, written with the learner's own layers.

"model": the learner's model.py runs gpt_forward (their forwards, composed as numpy_gpt.nn.model
does, without dropout, tied head) and their gpt_backward; "llama" (llama_model.py) the same for
a Llama-shaped model. Every parameter's gradient is compared with numpy_gpt.GPT.backward on the
same weights (diagnosis.py, with the exercise's known mistakes), and with central finite
differences of the loss at a few sampled elements per parameter (all of them would take
~2000 forward passes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..nn.config import GPTConfig
from ..nn.gradcheck import TOLERANCE, relative_error
from ..nn.layers import cross_entropy_backward, linear_backward
from ..nn.model import GPT
from .catalog import GPT2_LAYER_EXERCISES, MODEL_NAME
from .checker import (
    ExerciseError,
    GradReport,
    Report,
    learner_imports,
    load_learner,
    one_line_error,
    read_progress,
)
from .diagnosis import diagnose
from .spec import ModelSpec

CONFIG = GPTConfig(vocab_size=11, block_size=4, n_layer=2, n_head=2, n_embd=8)
FD_SAMPLES = 4  # finite-difference elements per parameter


def model_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    idx = np.array([[1, 4, 1, 7], [4, 4, 0, 10]])  # repeated ids
    targets = rng.integers(0, CONFIG.vocab_size, idx.shape)
    targets[1, 2] = -100  # an ignored target
    return [("B=2 T=4, repeated ids, 1 ignored target", idx, targets),
            ("B=1 T=1", np.array([[5]]), np.array([[3]]))]


def gpt2_known(model: GPT, idx: np.ndarray, targets: np.ndarray, cache, want: dict
               ) -> dict[str, list]:
    """The tied wte's two parts, for the diagnosis of a missing one."""
    _, dhead, _ = linear_backward(cross_entropy_backward(cache.loss), cache.lm_head)
    wte = "transformer.wte.weight"
    return {wte: [("wte has only the output head's gradient: the tied wte is also the "
                   "embedding table, add embedding_backward's dwte", dhead),
                  ("wte has only the embedding's gradient: the tied wte is also the output "
                   "head (lm_head), add its dw", want[wte] - dhead)]}


GPT2_MODEL = ModelSpec(
    MODEL_NAME, "gpt_forward", "gpt_backward", CONFIG, (CONFIG.n_layer, CONFIG.n_head),
    model_cases, gpt2_known,
    lambda B, T: {"B": B, "T": T, "V": CONFIG.vocab_size, "C": CONFIG.n_embd,
                  "3C": 3 * CONFIG.n_embd, "4C": 4 * CONFIG.n_embd},
    tuple(GPT2_LAYER_EXERCISES))


def check_model_exercise(folder: Path, seed: int = 0, spec: ModelSpec = GPT2_MODEL) -> Report:
    path = folder / f"{spec.name}.py"
    with learner_imports(folder):
        module = load_learner(path, (spec.forward, spec.backward))
        report = _check(spec, module, path, np.random.default_rng(seed))
    not_yet = [n for n in spec.layers if read_progress(folder).get(n) != "passed"]
    if not report.passed and not_yet:
        report.notes.append(f"these layer exercises have not passed yet: {' '.join(not_yet)}")
    return report


def _check(spec: ModelSpec, module, path: Path, rng: np.random.Generator) -> Report:
    folder = path.parent
    model = GPT(spec.config, dtype="float64", seed=0)
    for p in model.params.values():  # away from the init's ones and zeros, as gradcheck does
        p += 0.1 * rng.standard_normal(p.shape)
    report = Report(spec.name, path, spec.backward)
    grads = {name: GradReport(name) for name in model.params}
    for label, idx, targets in spec.cases(rng):
        report.cases.append(label)
        _, ref_loss, cache = model.forward(idx, targets)
        want = model.backward(cache)
        known = spec.known(model, idx, targets, cache, want)
        params = {k: v.copy() for k, v in model.params.items()}

        def run_forward() -> tuple[float, object]:
            try:
                return getattr(module, spec.forward)(params, idx, targets, *spec.forward_args)
            except Exception as e:
                raise one_line_error(e, folder, spec.forward) from None

        loss, lcache = run_forward()
        if not np.isclose(loss, ref_loss, rtol=1e-10, atol=0.0):
            raise ExerciseError(f"{spec.forward} gives loss {loss:.6f}, the reference "
                                f"{ref_loss:.6f}: a forward in your layer files was changed")
        try:
            got = getattr(module, spec.backward)(lcache)
        except Exception as e:
            raise one_line_error(e, folder, spec.backward) from None
        if not isinstance(got, dict):
            raise ExerciseError(f"{spec.backward} returned {type(got).__name__}; expected a "
                                "dict of gradients by parameter name")
        extra = sorted(set(got) - set(want))
        if extra:
            raise ExerciseError(f"{spec.backward} returned unknown names: {', '.join(extra)}")
        dims = spec.dims(*idx.shape)
        for name, rep in grads.items():
            if rep.diagnosis is not None:
                continue
            if name not in got:
                rep.diagnosis, rep.case = "missing from the returned dict", label
                continue
            message = diagnose(got[name], want[name], dims=dims, known=known.get(name))
            if message is None:
                rep.err_ref = max(rep.err_ref, relative_error(np.asarray(got[name]), want[name]))
                rep.err_fd = max(rep.err_fd, _sampled_fd(params[name], got[name], run_forward,
                                                         rng))
                if rep.err_fd > TOLERANCE:
                    message = f"disagrees with finite differences ({rep.err_fd:.2g})"
            if message is not None:
                rep.diagnosis, rep.case = message, label
    report.grads = list(grads.values())
    return report


def _sampled_fd(p: np.ndarray, grad: np.ndarray, run_forward, rng: np.random.Generator,
                h: float = 1e-5) -> float:
    """Central differences of the loss at FD_SAMPLES random elements of p (in place)."""
    flat_ids = rng.choice(p.size, size=min(FD_SAMPLES, p.size), replace=False)
    num, ana = [], []
    for i in flat_ids:
        ix = np.unravel_index(i, p.shape)
        old = p[ix]
        p[ix] = old + h
        up = run_forward()[0]
        p[ix] = old - h
        down = run_forward()[0]
        p[ix] = old
        num.append((up - down) / (2 * h))
        ana.append(np.asarray(grad)[ix])
    # scaled by the whole gradient: a sampled element may be ~0 (an unused wpe row)
    scale = max(float(np.abs(grad).max()), float(np.abs(num).max()), 1e-30)
    return float(np.abs(np.array(num) - np.array(ana)).max()) / scale
