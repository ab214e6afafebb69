"""Backprop exercises: write each layer's backward yourself, and have it checked.

    python -m numpy_gpt exercise list | start NAME | check NAME | hint NAME --level K

catalog.py / llama_catalog.py (what is checked; spec.py its pieces), templates.py /
template_model.py / template_llama.py (the learner's files), checker.py / modelcheck.py /
llama_model.py (finite differences + the reference), diagnosis.py (what kind of wrong),
hints.py, files.py (start / check in the learner's folder).
"""

from .catalog import ORDER
from .checker import ExerciseError, Report, format_report, progress_line, read_progress
from .files import DEFAULT_DIR, check, exercise_source, start
from .hints import hint

__all__ = ["DEFAULT_DIR", "ORDER", "ExerciseError", "Report", "check", "exercise_source",
           "format_report", "hint", "progress_line", "read_progress", "start"]
