"""Check a learner's backward: against finite differences and against the reference.

For each case of the exercise (catalog.py), in float64:

  1. the learner file's forward must still give the reference forward's output;
  2. their backward gets a random dout (a random dloss for the loss) and their forward's cache;
  3. each returned gradient is compared with the package's backward (diagnosis.py says what
     kind of wrong when it differs) and with central finite differences of
     L = sum(out * dout) (gradcheck.numerical_grad), which needs no reference at all.

A file that does not parse, lacks the function, raises, or returns the wrong number of
arrays ends the check with one ExerciseError line naming the file and line: no traceback.
Results go to FOLDER/progress.json (plain JSON) for the progress summary.
"""

from __future__ import annotations

import json
import sys
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.gradcheck import TOLERANCE, numerical_grad, relative_error
from .catalog import LAYER_EXERCISES, ORDER, Exercise
from .diagnosis import close, diagnose

PROGRESS_FILE = "progress.json"


class ExerciseError(ValueError):
    """The learner's file cannot be checked; the message is one line saying why."""


@dataclass
class GradReport:
    name: str
    diagnosis: str | None = None  # None: correct on every case
    case: str | None = None  # the first case where it was wrong
    err_ref: float = 0.0  # worst relative error vs the reference, over the cases
    err_fd: float = 0.0  # worst relative error vs finite differences

    @property
    def ok(self) -> bool:
        return self.diagnosis is None


@dataclass
class Report:
    exercise: str
    path: Path
    function: str
    cases: list[str] = field(default_factory=list)
    grads: list[GradReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.ok for g in self.grads)


# ---------------------------------------------------------------------------- the learner's file

@contextmanager
def learner_imports(folder: Path):
    """The folder first on sys.path, and no stale exercise modules (another folder's
    linear.py, say) in sys.modules, during and after."""
    def purge() -> None:
        for name in ORDER:
            sys.modules.pop(name, None)

    saved = list(sys.path)  # restored whole: model.py adds its own folder too
    purge()
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path[:] = saved
        purge()


def one_line_error(e: BaseException, folder: Path, what: str) -> ExerciseError:
    """'<what> raised KeyError: 'x' (linear.py line 40)', located at the deepest frame in
    the learner's folder."""
    where = ""
    for frame in traceback.extract_tb(e.__traceback__):
        if Path(frame.filename).resolve().parent == folder.resolve():
            where = f" ({Path(frame.filename).name} line {frame.lineno})"
    if isinstance(e, NotImplementedError):
        return ExerciseError(f"{what} is not written yet{where}: {e or 'fill in its body'}")
    msg = " ".join(str(e).split())
    return ExerciseError(f"{what} raised {type(e).__name__}{': ' + msg if msg else ''}{where}")


def load_learner(path: Path, functions: tuple[str, ...]) -> types.ModuleType:
    """Import the learner's file by path; every failure is one ExerciseError line."""
    if not path.is_file():
        raise ExerciseError(f"{path} does not exist: create it with `python -m numpy_gpt "
                            f"exercise start {path.stem} --dir {path.parent}`")
    source = path.read_text()
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as e:
        raise ExerciseError(f"{path} line {e.lineno}: syntax error: {e.msg}") from None
    module = types.ModuleType(f"_exercise_{path.stem}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except ModuleNotFoundError as e:
        if e.name in ORDER:  # model.py and llama.py import the learner's own layer files
            raise ExerciseError(f"{path.name} uses your {e.name}.py, which is not in "
                                f"{path.parent}: exercise start {e.name} --dir "
                                f"{path.parent}") from None
        raise one_line_error(e, path.parent, f"importing {path}") from None
    except Exception as e:  # the learner's code: anything can happen
        raise one_line_error(e, path.parent, f"importing {path}") from None
    for name in functions:
        if not callable(module.__dict__.get(name)):
            raise ExerciseError(f"{path} has no function {name}(): keep its name and "
                                f"signature (a fresh copy: exercise start {path.stem} --force "
                                "--dir ...)")
    return module


def as_grads(result: Any, names: tuple[str, ...], function: str) -> tuple:
    """The returned value as a tuple of len(names), or one ExerciseError line."""
    if isinstance(result, (tuple, list)):
        if len(result) != len(names):
            raise ExerciseError(
                f"{function} returned {len(result)} values; expected {len(names)}: "
                f"{', '.join(names)}")
        return tuple(result)
    if len(names) == 1:
        return (result,)
    raise ExerciseError(f"{function} returned one {type(result).__name__}; expected "
                        f"{len(names)} values: ({', '.join(names)})")


# ---------------------------------------------------------------------------- the check

def copy_args(args: list) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def check_layer(ex: Exercise, folder: Path, seed: int = 0) -> Report:
    """Run one layer exercise on all its cases; raise ExerciseError for a broken file."""
    path = folder / f"{ex.name}.py"
    with learner_imports(folder):
        module = load_learner(path, (ex.forward, ex.backward))
        return _check_layer(ex, module, path, np.random.default_rng(seed))


def _check_layer(ex: Exercise, module: types.ModuleType, path: Path,
                 rng: np.random.Generator) -> Report:
    forward, backward = getattr(module, ex.forward), getattr(module, ex.backward)
    report = Report(ex.name, path, ex.backward)
    grads = {n: GradReport(n) for n in ex.grads}
    for case in ex.cases(rng):
        report.cases.append(case.label)
        args = ex.args(case)
        out_ref, cache_ref = ex.ref_forward(*copy_args(args))
        try:
            out, cache = forward(*copy_args(args))
        except Exception as e:
            raise one_line_error(e, path.parent, ex.forward) from None
        if not close(np.asarray(out, dtype=np.float64), np.asarray(out_ref)):
            raise ExerciseError(f"{ex.forward} in {path} no longer gives the reference's "
                                f"output (case {case.label}): leave the forward as it was")
        dout = 0.75 if ex.scalar_output else rng.standard_normal(np.shape(out_ref))
        want = ex.ref_backward(dout, cache_ref)
        try:
            got = backward(cache, dout) if ex.scalar_output else backward(
                np.array(dout), cache)
        except Exception as e:
            raise one_line_error(e, path.parent, ex.backward) from None
        got = as_grads(got, ex.grads, ex.backward)
        numeric = _finite_differences(ex, case, args, dout)
        mistakes = ex.mistakes(case, dout, cache_ref)
        others = dict(zip(ex.grads, want))
        for i, name in enumerate(ex.grads):
            _judge(grads[name], got[i], want[i], numeric.get(name), case, ex, others, i,
                   mistakes)
    report.grads = list(grads.values())
    return report


def _finite_differences(ex: Exercise, case: Any, args: list, dout: Any
                        ) -> dict[str, np.ndarray]:
    """d(sum(out * dout))/d(each tensor) by central differences, on the reference forward."""
    names = {id(t): n for n, t in case.tensors.items()}
    numeric = {}
    for a in args:
        if isinstance(a, np.ndarray) and id(a) in names and a.dtype == np.float64:
            def objective() -> float:
                out = ex.ref_forward(*args)[0]
                return float(out * dout) if ex.scalar_output else float(np.sum(out * dout))

            numeric["d" + names[id(a)]] = numerical_grad(objective, a)
    return numeric


def _judge(rep: GradReport, got: Any, want: Any, numeric: np.ndarray | None, case: Any,
           ex: Exercise, others: dict, index: int, mistakes: list) -> None:
    if rep.diagnosis is not None:
        return  # report the first case it failed on
    if want is None:
        if got is not None:
            rep.diagnosis, rep.case = "should be None: the forward had no bias", case.label
        return
    known = [(m.message, m.value) for m in mistakes if m.grad == index]
    others = {k: v for k, v in others.items() if k != rep.name}
    kwargs = {"dims": case.dims, "factors": case.factors}
    message = diagnose(got, want, known=known, others=others, **kwargs)
    if (message is not None and ex.parts and np.shape(got) == want.shape
            and not any(message == m for m, _ in known)):  # a fused gradient: part by part
        message = _diagnose_parts(np.asarray(got, dtype=np.float64), want, ex.parts,
                                  case.part_sizes, known, kwargs)
    if message is None and numeric is not None:
        rep.err_fd = max(rep.err_fd, relative_error(numeric, np.asarray(got)))
        if rep.err_fd > TOLERANCE:  # agrees with the reference, yet not with the numbers
            message = f"disagrees with finite differences ({rep.err_fd:.2g})"
    if message is None:
        rep.err_ref = max(rep.err_ref, relative_error(np.asarray(got), want))
    else:
        rep.diagnosis, rep.case = message, case.label


def _diagnose_parts(got: np.ndarray, want: np.ndarray, parts: tuple[str, ...],
                    sizes: tuple[int, ...], known: list, kwargs: dict) -> str:
    """Diagnose each part of a fused gradient (dq | dk | dv) on its own; sizes: the parts'
    widths when they differ (grouped-query attention), else equal parts."""
    where = np.cumsum(sizes)[:-1] if sizes else len(parts)

    def split(v: np.ndarray) -> list[np.ndarray]:
        return np.split(v, where, axis=-1)

    got_parts, want_parts = split(got), split(want)
    known_parts = [(msg, split(v)) for msg, v in known]
    said = []
    for j, part in enumerate(parts):
        m = diagnose(got_parts[j], want_parts[j], known=[(msg, v[j]) for msg, v in known_parts],
                     **kwargs)
        said.append(f"d{part} part {'right' if m is None else 'wrong: ' + m}")
    return "; ".join(said)


# ---------------------------------------------------------------------------- progress

def read_progress(folder: Path) -> dict[str, str]:
    path = folder / PROGRESS_FILE
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, OSError):
        return {}
    return {k: v for k, v in data.items() if k in ORDER and v in ("passed", "failed")}


def record_progress(folder: Path, name: str, passed: bool) -> dict[str, str]:
    progress = read_progress(folder)
    progress[name] = "passed" if passed else "failed"
    (folder / PROGRESS_FILE).write_text(json.dumps(progress, indent=1) + "\n")
    return progress


def progress_line(progress: dict[str, str]) -> str:
    done = [n for n in ORDER if progress.get(n) == "passed"]
    todo = [n for n in ORDER if progress.get(n) != "passed"]
    line = f"progress: {len(done)}/{len(ORDER)} passed" + (f" ({' '.join(done)})" if done else "")
    return line + (f"; next: {todo[0]}" if todo
                   else "; all done: you wrote a GPT's and a Llama's backward")


def format_report(report: Report) -> list[str]:
    """The lines `exercise check` prints."""
    lines = [f"check {report.exercise}: {report.function} in {report.path}, float64, "
             f"{len(report.cases)} cases: {'; '.join(report.cases)}"]
    width = max(len(g.name) for g in report.grads)
    for g in report.grads:
        if g.ok:
            lines.append(f"  {g.name:{width}s}  correct  (vs reference {g.err_ref:.1e}, "
                         f"vs finite differences {g.err_fd:.1e})")
        else:
            lines.append(f"  {g.name:{width}s}  WRONG    on {g.case}: {g.diagnosis}")
    lines += [f"  note: {n}" for n in report.notes]
    lines.append(f"{'PASSED' if report.passed else 'NOT YET'}: {report.exercise}")
    return lines


def layer_exercise(name: str) -> Exercise:
    return LAYER_EXERCISES[name]
