"""parity: proves numpy_gpt and torch_gpt equal, tensor by tensor (`python -m parity`).

    from parity import compare, run, plan, PRESETS
    rows = run(plan("float64", "cpu"), *PRESETS["tiny"])
"""

from .harness import Context, Row, compare, print_report
from .runner import PRESETS, plan, run
from .tolerances import TOLERANCES, tolerance

__all__ = [
           "PRESETS",
           "TOLERANCES",
           "Context",
           "Row",
           "compare",
           "plan",
           "print_report",
           "run",
           "tolerance",
]
