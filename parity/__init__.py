"""parity: proves numpy_gpt and torch_gpt equal, tensor by tensor (`python -m parity`).

    from parity import compare, run, plan, PRESETS
    rows = run(plan("float64", "cpu"), *PRESETS["tiny"])
    report = check_twin("my_gpt.py:make", *PRESETS["tiny"])   # any GPT vs the reference

Its modules import torch; the names below load on first use, so that `python -m parity`
without PyTorch installed can say so in one line (parity/__main__.py).
"""

import importlib

_HOMES = {
    "TwinReport": "external", "check_twin": "external",
    "Context": "harness", "Row": "harness", "compare": "harness", "print_report": "harness",
    "PRESETS": "runner", "plan": "runner", "run": "runner",
    "TOLERANCES": "tolerances", "tolerance": "tolerances",
    "TwinError": "twins",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'parity' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
