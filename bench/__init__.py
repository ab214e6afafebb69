"""bench: timings of numpy_gpt and torch_gpt, checked for correctness first (`python -m bench`).

    from bench import step_flops, SIZES
    step_flops(SIZES["baby"].config, 12, 64, "train")    # FLOPs of one training step

See bench/README.md for how to run it and read the numbers.
"""

from .backends import BACKENDS, Backend
from .flops import WORKLOADS, generation_flops, matmul_params, step_flops
from .sizes import SIZES, Size

__all__ = ["BACKENDS", "SIZES", "WORKLOADS", "Backend", "Size", "generation_flops",
           "matmul_params", "step_flops"]
