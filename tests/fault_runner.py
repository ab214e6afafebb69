"""Run a numpy_gpt command with the machine made slow, for tests/training/test_faults.py: each
training step sleeps STEP_S seconds (so a signal lands mid-run, whatever the CPU), the
checkpoint written when a run is stopped sleeps SAVE_S seconds before its trainer state (so a
second signal lands while it is being written), and, when EVAL_S is given, each evaluation
batch sleeps EVAL_S seconds, the first one after creating the file `evaluating` in the working
directory (so a signal lands mid-evaluation). Nothing numerical changes.

    python tests/fault_runner.py STEP_S SAVE_S [EVAL_S] train --dataset ... --out ...
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numpy_gpt.cli.main import main  # noqa: E402
from numpy_gpt.nn import checkpoint
from numpy_gpt.training.numpy_backend import NumpyBackend  # noqa: E402


def slowed(step_s: float, save_s: float, eval_s: float = 0.0) -> None:
    step, write_json = NumpyBackend.step, checkpoint._write_json
    eval_loss = NumpyBackend.eval_loss

    def slow_eval(self, x, y):
        Path("evaluating").touch()
        time.sleep(eval_s)
        return eval_loss(self, x, y)

    def slow_step(self, lr, grad_clip):
        time.sleep(step_s)
        return step(self, lr, grad_clip)

    def slow_json(file, obj):
        if file.name == checkpoint.TRAINER_STATE_FILE and not obj.get("evaluated", True):
            time.sleep(save_s)  # only the save a stop signal asks for
        write_json(file, obj)

    NumpyBackend.step = slow_step
    checkpoint._write_json = slow_json
    if eval_s:
        NumpyBackend.eval_loss = slow_eval


if __name__ == "__main__":
    times, command = sys.argv[1:3], sys.argv[3:]
    if command[0] != "train":  # the optional EVAL_S
        times, command = [*times, command[0]], command[1:]
    slowed(*map(float, times))
    sys.exit(main(command))  # the NumPy twin
