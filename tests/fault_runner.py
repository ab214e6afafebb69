"""Run a numpy_gpt command with the machine made slow, for tests/training/test_faults.py: each
training step sleeps STEP_S seconds (so a signal lands mid-run, whatever the CPU), and the
checkpoint written when a run is stopped sleeps SAVE_S seconds before its trainer state (so a
second signal lands while it is being written). Nothing numerical changes.

    python tests/fault_runner.py STEP_S SAVE_S train --dataset ... --out ...
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numpy_gpt.cli.main import main  # noqa: E402
from numpy_gpt.nn import checkpoint
from numpy_gpt.training import train  # noqa: E402


def slowed(step_s: float, save_s: float) -> None:
    step, write_json = train.NumpyBackend.step, checkpoint._write_json

    def slow_step(self, lr, grad_clip):
        time.sleep(step_s)
        return step(self, lr, grad_clip)

    def slow_json(file, obj):
        if file.name == checkpoint.TRAINER_STATE_FILE and not obj.get("evaluated", True):
            time.sleep(save_s)  # only the save a stop signal asks for
        write_json(file, obj)

    train.NumpyBackend.step = slow_step
    checkpoint._write_json = slow_json


if __name__ == "__main__":
    slowed(float(sys.argv[1]), float(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))  # the NumPy twin
