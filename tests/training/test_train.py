"""The shared training loop in both twins: learning, exact resume, stopping, guards, CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_train import StopDuring, factory, final_params, tiny

from numpy_gpt.data.dataset import TokenDataset
from numpy_gpt.data.prepare import prepare
from numpy_gpt.nn.checkpoint import load_trainer_state
from numpy_gpt.training.numpy_backend import NumpyBackend, numpy_backend
from numpy_gpt.training.train import TrainingError, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(citizens_chars) -> Path:
    return citizens_chars


def backends():
    return [pytest.param("numpy", id="numpy"), pytest.param("torch", id="torch")]


@pytest.mark.parametrize("backend", backends())
def test_short_run_lowers_the_loss_and_writes_outputs(backend, data_dir, tmp_path):
    cfg = tiny(data_dir, max_iters=30, learning_rate=1e-2, min_lr=1e-3)
    result = train(cfg, TokenDataset(data_dir), tmp_path, factory(backend))
    first, last = result.log[0], result.log[-1]
    assert result.status == "done" and last["iter"] == 30
    assert last["val_loss"] < first["val_loss"] - 0.5
    assert (tmp_path / "best" / "model.safetensors").is_file()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == [0, 5, 10, 15, 20, 25, 30]
    assert {"iter", "train_loss", "val_loss", "val_ppl", "lr", "elapsed_s"} <= set(lines[0])


STOPS = {"between steps": (8, 1), "mid-step": (8, 2), "mid-evaluation, train split": (10, 3),
         "mid-evaluation, val split": (10, 5), "mid-step after an evaluation": (10, 6)}


@pytest.mark.parametrize("when", list(STOPS))
@pytest.mark.parametrize("backend", backends())
def test_interrupt_and_resume_is_bit_identical(backend, when, data_dir, tmp_path):
    """Stop at each place the loop looks (what Ctrl-C does), resume to the end: the same
    parameters and log as an uninterrupted run, bit for bit, with dropout and gradient
    accumulation on. An evaluation cut short is dropped (not logged) and redone on resume."""
    cfg, ds = tiny(data_dir), TokenDataset(data_dir)
    train(cfg, ds, tmp_path / "a", factory(backend))
    n, k = STOPS[when]
    stop = StopDuring(n, k)
    stopped = train(cfg, ds, tmp_path / "b", factory(backend), reporter=stop, should_stop=stop)
    assert stopped.status == "interrupted" and stopped.iter == n
    state = load_trainer_state(tmp_path / "b" / "last")
    assert state["iter"] == n and state["evaluated"] == (when == "mid-step after an evaluation")
    logged = [json.loads(x)["iter"]
              for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert logged[-1] == (10 if state["evaluated"] else 5)
    train(cfg, ds, tmp_path / "b", factory(backend), resume=True)
    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    log_a = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [(r["iter"], r["val_loss"]) for r in log_b] == [(r["iter"], r["val_loss"])
                                                           for r in log_a]


def test_sigkill_after_a_checkpoint_then_resume_matches(data_dir, tmp_path):
    """A real process killed with SIGKILL once a checkpoint exists; --resume reaches the same
    final parameters as a run that was never killed."""
    common = ["--dataset", str(data_dir), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
              "--block-size", "16", "--batch-size", "4", "--max-iters", "300",
              "--eval-interval", "5", "--eval-iters", "1", "--sample-tokens", "0", "--no-plot",
              "--dropout", "0.1", "--warmup-iters", "2"]
    cmd = [sys.executable, "-m", "numpy_gpt", "train", *common]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*cmd, "--out", str(tmp_path / "a")], check=True, env=env, cwd=tmp_path,
                   capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "b")], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "last" / "trainer_state.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["iter"] >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["iter"]
    assert 10 <= killed_at < 300, "the run finished before it could be killed"
    done = subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--resume"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigint_saves_and_exits_cleanly(data_dir, tmp_path):
    cmd = [sys.executable, "-m", "numpy_gpt", "train", "--dataset", str(data_dir), "--n-layer",
           "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
           "--max-iters", "100000", "--eval-interval", "1000", "--sample-tokens", "0",
           "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and log.read_text()):
        time.sleep(0.05)  # the first evaluation has been written: training is under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in out
    assert load_trainer_state(tmp_path / "run" / "last")["iter"] > 0


def test_early_stopping_triggers(data_dir, tmp_path):
    """lr 1e-12 leaves float32 weights unchanged, so val loss never improves after iter 0."""
    cfg = tiny(data_dir, learning_rate=1e-12, min_lr=0.0, patience=2, max_iters=100)
    result = train(cfg, TokenDataset(data_dir), tmp_path, numpy_backend)
    assert result.status == "early_stopped"
    assert [r["iter"] for r in result.log] == [0, 5, 10]


def test_nan_guard_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    class Diverging(NumpyBackend):
        steps = 0

        def forward_backward(self, x, y, scale):
            Diverging.steps += 1
            loss = super().forward_backward(x, y, scale)
            return float("nan") if Diverging.steps > 14 else loss

    def make(tcfg, config, init):
        return Diverging(numpy_backend(tcfg, config, init).model, tcfg)

    with pytest.raises(TrainingError, match="loss became nan at iter 7.*keeps the last good"):
        train(tiny(data_dir), TokenDataset(data_dir), tmp_path, make)
    assert load_trainer_state(tmp_path / "last")["iter"] == 5  # the evaluation before


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numpy_gpt", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--learning-rate", "-1"], "--learning-rate must be > 0"),
        (["--config", "missing.json"], "does not exist"),
    ],
)
def test_train_bad_input_one_line_error(args, message, tmp_path):
    done = run_cli("train", *args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_existing_run_is_not_overwritten_and_vocab_mismatch(data_dir, tmp_path):
    cfg = tiny(data_dir, max_iters=5)
    train(cfg, TokenDataset(data_dir), tmp_path / "run", numpy_backend)
    before = (tmp_path / "run" / "last" / "model.safetensors").read_bytes()
    done = run_cli("train", "--dataset", str(data_dir), "--out", str(tmp_path / "run"),
                   cwd=tmp_path)
    assert done.returncode == 1 and "already holds a training run" in done.stderr
    assert (tmp_path / "run" / "last" / "model.safetensors").read_bytes() == before
    # a checkpoint whose vocabulary is smaller than the dataset's tokenizer
    other = tmp_path / "other.txt"
    other.write_text("abc" * 300)
    small = prepare(other, tmp_path / "small", fmt="text", tokenizer="char", name="small")
    train(tiny(small, max_iters=2), TokenDataset(small), tmp_path / "smallrun", numpy_backend)
    done = run_cli("train", "--dataset", str(data_dir), "--init-from",
                   str(tmp_path / "smallrun" / "last"), "--out", str(tmp_path / "x"),
                   cwd=tmp_path)
    assert done.returncode == 1 and "vocab_size 3" in done.stderr


def test_resume_of_corrupt_checkpoint_is_a_clear_error(data_dir, tmp_path):
    train(tiny(data_dir, max_iters=5), TokenDataset(data_dir), tmp_path / "run", numpy_backend)
    (tmp_path / "run" / "last" / "trainer_state.json").write_text("{not json")
    done = run_cli("train", "--resume", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 1 and "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_torchrun_ddp_two_gloo_processes(data_dir, tmp_path):
    """Data parallel on CPU: two ranks, gloo; rank 0 writes the checkpoint and the log."""
    pytest.importorskip("torch")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "torch_gpt", "train", "--dataset", str(data_dir), "--n-layer", "1",
           "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
           "--max-iters", "10", "--eval-interval", "5", "--eval-iters", "1",
           "--sample-tokens", "0", "--no-plot", "--device", "cpu", "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 5, 10]  # one writer: no duplicated lines
    assert log[-1]["val_loss"] < log[0]["val_loss"]


def test_time_estimate_counts_the_steps_and_evaluations_left():
    """estimate.py's arithmetic: a step is 3 forwards per micro-batch, an evaluation 2 x
    eval_iters forwards, and the run what is left of both from `start`."""
    from numpy_gpt.training.config import TrainConfig
    from numpy_gpt.training.estimate import estimate_line

    tcfg = TrainConfig(max_iters=2000, eval_interval=250, eval_iters=20,
                       gradient_accumulation_steps=2)
    assert estimate_line(tcfg, 0.1, 0) == (
        "time estimate: ~0.60 s a step, ~4.00 s an evaluation (20 batches x 2 splits), "
        "~20.6 min for 2,000 steps and 9 evaluations (from one timed forward of 0.10 s)")
    # resumed at 500 (stopped before its evaluation): 500, 750, ..., 2000; at 600: 750, ...
    assert "for 1,500 steps and 7 evaluations" in estimate_line(tcfg, 0.1, 500)
    assert "for 1,400 steps and 6 evaluations" in estimate_line(tcfg, 0.1, 600)
