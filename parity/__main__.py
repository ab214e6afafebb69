"""Entry point of `python -m parity` (the flags are documented in parity/cli.py)."""

import sys
import time

STARTED = time.perf_counter()  # before torch is imported: the time in all counts start-up

try:
    from .cli import main
except ModuleNotFoundError as e:  # parity holds numpy_gpt against torch_gpt: it needs both
    if e.name != "torch":
        raise
    sys.exit("error: parity compares numpy_gpt with torch_gpt and needs PyTorch, which is not "
             "installed: pip install '.[torch]' (torch==2.13.0)")

raise SystemExit(main(started=STARTED))
