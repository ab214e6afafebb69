"""parity: proves numpy_gpt and torch_gpt equal, tensor by tensor (`python -m parity`).

    from parity import compare, run, plan, PRESETS
    rows = run(plan("float64", "cpu"), *PRESETS["tiny"])
    report = check_twin("my_gpt.py:make", *PRESETS["tiny"])   # any GPT vs the reference
"""

from .external import TwinReport, check_twin
from .harness import Context, Row, compare, print_report
from .runner import PRESETS, plan, run
from .tolerances import TOLERANCES, tolerance
from .twins import TwinError

__all__ = [
           "PRESETS",
           "TOLERANCES",
           "Context",
           "Row",
           "TwinError",
           "TwinReport",
           "check_twin",
           "compare",
           "plan",
           "print_report",
           "run",
           "tolerance",
]
