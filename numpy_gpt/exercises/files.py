"""The learner's folder: `start` writes an exercise file there, `check` runs one and records
the result. The folder is the learner's (default ./exercises), never inside the package."""

from __future__ import annotations

from pathlib import Path

from .catalog import LAYER_EXERCISES, MODEL_EXERCISES, MODEL_NAME, ORDER
from .checker import Report, check_layer, record_progress
from .llama_model import LLAMA_MODEL
from .modelcheck import GPT2_MODEL, check_model_exercise
from .template_llama import LLAMA, LLAMA_BODIES
from .template_model import MODEL
from .templates import BODIES, render

DEFAULT_DIR = "exercises"
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def check_name(name: str) -> str:
    if name not in ORDER:
        raise ValueError(f"unknown exercise {name!r}; the exercises are: {' '.join(ORDER)}")
    return name


def exercise_source(name: str, folder: str | Path) -> str:
    """The text of the learner's starting file for exercise `name`."""
    check_name(name)
    if name in MODEL_EXERCISES:
        title, section, backward = MODEL_EXERCISES[name]
        body = MODEL if name == MODEL_NAME else LLAMA
    else:
        ex = LAYER_EXERCISES[name]
        title, section, backward = ex.title, ex.section, ex.backward
        body = BODIES[name] if name in BODIES else LLAMA_BODIES[name]
    return render(body, number=str(ORDER.index(name) + 1), total=str(len(ORDER)), title=title,
                  section=section, backward=backward, name=name, folder=str(folder))


def start(name: str, folder: str | Path = DEFAULT_DIR, force: bool = False) -> Path:
    """Write FOLDER/NAME.py; refuse to overwrite the learner's work unless force."""
    folder = Path(folder)
    if folder.resolve().is_relative_to(PACKAGE_DIR):
        raise ValueError(f"{folder} is inside the numpy_gpt package: choose your own folder")
    path = folder / f"{check_name(name)}.py"
    if path.exists() and not force:
        raise ValueError(f"{path} exists and may hold your work; keep it, or pass "
                              "--force to start over")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(exercise_source(name, folder))
    return path


def check(name: str, folder: str | Path = DEFAULT_DIR, seed: int = 0) -> tuple[Report, dict]:
    """Check FOLDER/NAME.py; returns the report and the updated progress (name -> status)."""
    folder = Path(folder)
    if check_name(name) in MODEL_EXERCISES:
        spec = GPT2_MODEL if name == MODEL_NAME else LLAMA_MODEL
        report = check_model_exercise(folder, seed, spec)
    else:
        report = check_layer(LAYER_EXERCISES[name], folder, seed)
    return report, record_progress(folder, name, report.passed)
