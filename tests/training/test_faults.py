"""What the machine does to a run (issue 18): a full disk at each write site, SIGTERM/SIGHUP at
several points of a real training process, two runs racing on one folder, truncated or edited
prepared data. Each test asserts the one line the user gets, the exit status, and that nothing
good was lost (the intact checkpoint loads, and --resume ends bit-identical to a run that was
never disturbed). The two concurrent chat sessions are in tests/generation/test_app.py.

The full disk is an injected OSError (or safetensors' SafetensorError, its real form) at each
write site; where this machine lets us mount a tmpfs (root), one test also fills a real one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CITIZENS as TEXT
from conftest import twin_named
from safetensors import SafetensorError

from numpy_gpt.cli.main import main
from numpy_gpt.data.prepare import prepare
from numpy_gpt.files.run_lock import LOCK_FILE, RunLock, RunLockError
from numpy_gpt.files.safe_io import WriteError, append_line, replace_dir
from numpy_gpt.nn import checkpoint
from numpy_gpt.nn.checkpoint import load_checkpoint, load_trainer_state

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parents[1] / "fault_runner.py"
ENOSPC = "No space left on device"


@pytest.fixture(scope="module")
def data(citizens_chars) -> Path:
    return citizens_chars


def flags(data: Path, out: Path, max_iters: int = 30) -> list[str]:
    return ["--dataset", str(data), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--max-iters", str(max_iters),
            "--eval-interval", "10", "--eval-iters", "1", "--sample-tokens", "0",
            "--dropout", "0.1", "--warmup-iters", "2", "--out", str(out)]


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory) -> dict[str, np.ndarray]:
    """Final parameters of the undisturbed 30- and 60-iteration runs."""
    out = tmp_path_factory.mktemp("reference")
    finals = {}
    for n in (30, 60):
        assert main(["train", *flags(data, out / str(n), n), "--no-plot"]) == 0
        finals[n] = load_checkpoint(out / str(n) / "last")[1]
    return finals


def same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def no_leftovers(folder: Path) -> None:
    """No temporary or moved-aside folder or file was left behind."""
    left = [p.name for p in folder.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert not left, left


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def disk_full(name: str = "x") -> OSError:
    return OSError(errno.ENOSPC, ENOSPC, name)


# ---------------------------------------------------------------------------- a full disk


def fail_on_call(n: int, exc: BaseException, real):
    """A stand-in for `real` that raises `exc` on its n-th call (1-based)."""
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return real(*args, **kwargs)

    return fake


# save_file calls per evaluation: last/ (model, optimizer), best/ (model) when it improves.
# The 4th call is last/model.safetensors of the second evaluation (iteration 10).
WRITE_SITES = {
    "safetensors (its own error)": ("save_file", 4, SafetensorError(
        f"Error while serializing: IoError(Os {{ code: 28, kind: StorageFull, message: "
        f"\"{ENOSPC}\" }}) (os error 28)"), "last/model.safetensors"),
    "optimizer moments": ("save_file", 5, disk_full(), "last/optimizer.safetensors"),
    "trainer state": ("_write_json", 8, disk_full(), "last/trainer_state.json"),
}


@pytest.mark.parametrize("site", list(WRITE_SITES))
def test_disk_full_while_writing_a_checkpoint(site, data, reference, tmp_path, monkeypatch,
                                              capsys):
    """The previous last/ survives whole, the line says which file, why, and what to do;
    freeing space and resuming ends exactly where an undisturbed run ends."""
    attr, n, exc, file = WRITE_SITES[site]
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint, attr, fail_on_call(n, exc, getattr(checkpoint, attr)))
    assert main(["train", *flags(data, out), "--no-plot"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: cannot write {out / file}: {ENOSPC}; the checkpoint at iteration "
                    f"0 in {out / 'last'} is intact; free space and run with --resume --out "
                    f"{out}")
    assert load_trainer_state(out / "last")["iter"] == 0
    load_checkpoint(out / "last")
    no_leftovers(out)
    assert not (out / LOCK_FILE).exists()
    monkeypatch.undo()
    assert main(["train", *flags(data, out), "--no-plot", "--resume"]) == 0
    same_params(load_checkpoint(out / "last")[1], reference[30])
    assert [r["iter"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            ] == [0, 10, 20, 30]


def test_disk_full_in_the_torch_twin(data, tmp_path, monkeypatch, capsys):
    """The torch twin writes the same checkpoint folders through the same code: the same line,
    and its resume ends where its undisturbed run ends."""
    pytest.importorskip("torch")
    assert main(["train", *flags(data, tmp_path / "ref"), "--no-plot"],
                twin=twin_named("torch")) == 0
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "save_file", fail_on_call(4, disk_full(),
                                                              checkpoint.save_file))
    assert main(["train", *flags(data, out), "--no-plot"], twin=twin_named("torch")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {out / 'last/model.safetensors'}: {ENOSPC}; "
                           f"the checkpoint at iteration 0 in {out / 'last'} is intact")
    monkeypatch.undo()
    assert main(["train", *flags(data, out), "--no-plot", "--resume"],
                twin=twin_named("torch")) == 0
    same_params(load_checkpoint(out / "last")[1], load_checkpoint(tmp_path / "ref" / "last")[1])


def test_disk_full_while_appending_the_log(data, reference, tmp_path, monkeypatch, capsys):
    """The checkpoint of that evaluation is on disk; its log line, kept in the checkpoint's
    trainer state, is put back when the run resumes."""
    import numpy_gpt.training.train as train_mod

    out = tmp_path / "run"
    monkeypatch.setattr(train_mod, "append_line", fail_on_call(
        2, WriteError(out / "log.jsonl", ENOSPC), train_mod.append_line))
    assert main(["train", *flags(data, out), "--no-plot"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {out / 'log.jsonl'}: {ENOSPC}; the checkpoint "
                           f"at iteration 10 in {out / 'last'} is intact")
    monkeypatch.undo()
    assert main(["train", *flags(data, out), "--no-plot", "--resume"]) == 0
    same_params(load_checkpoint(out / "last")[1], reference[30])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 10, 20, 30]


def test_a_failed_append_leaves_no_torn_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"iter": 0}\n')
    with pytest.raises(WriteError, match="cannot write /dev/full: No space left on device"):
        append_line("/dev/full", '{"iter": 1}')
    real_open = open

    class Half:
        """A file whose write stores half the bytes, then fails (a disk filling up)."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise disk_full(str(log))

        def flush(self):
            self.f.flush()

        def truncate(self, size):
            self.f.truncate(size)

    import builtins

    builtins.open = lambda *a, **k: Half(real_open(*a, **k))
    try:
        with pytest.raises(WriteError):
            append_line(log, '{"iter": 10, "train_loss": 1.0}')
    finally:
        builtins.open = real_open
    assert log.read_text() == '{"iter": 0}\n'


def test_disk_full_while_drawing_loss_png(data, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    out = tmp_path / "run"
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (_ for _ in ()).throw(
        disk_full(str(a[0]))))
    assert main(["train", *flags(data, out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: cannot write {out / 'loss.png'}: {ENOSPC}; training is finished "
                    f"and its checkpoints in {out}/last and {out}/best are intact; free space "
                    f"and draw the curves with: python -m numpy_gpt plot training --run {out}")
    assert load_trainer_state(out / "last")["iter"] == 30
    assert not (out / "loss.png").exists()
    no_leftovers(out)


def test_disk_full_while_preparing_keeps_the_old_folder(tmp_path, monkeypatch, capsys):
    import numpy_gpt.data.prepare as prep

    (tmp_path / "input.txt").write_text(TEXT)
    out = tmp_path / "prepared"
    args = ["prepare", "--input", str(tmp_path / "input.txt"), "--tokenizer", "char",
            "--out", str(out), "--force"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    monkeypatch.setattr(prep, "stage_file", fail_on_call(
        2, WriteError(out / "val.bin", ENOSPC), prep.stage_file))
    assert main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: cannot write {out / 'val.bin'}: {ENOSPC}; the prepared folder "
                    f"{out} is unchanged; free space and prepare again")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing half-written


def test_disk_full_while_exporting(data, tmp_path, monkeypatch, capsys):
    import numpy_gpt.hf.exporter as hf

    ckpt = tmp_path / "run"
    assert main(["train", *flags(data, ckpt, 10), "--no-plot"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(hf, "save_file", fail_on_call(1, SafetensorError(
        f"Error while serializing: {ENOSPC} (os error 28)"), hf.save_file))
    out = tmp_path / "hf"
    assert main(["export", "--ckpt", str(ckpt / "best"), "--out", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: cannot write {out / 'model.safetensors'}: {ENOSPC}; {out} was "
                    f"not created and {ckpt / 'best'} is untouched; free space and export again")
    assert not out.exists()
    no_leftovers(tmp_path)


def test_disk_full_while_fine_tuning(tiny_chat, tmp_path, monkeypatch, capsys):
    """A LoRA run: the adapter is written inside the checkpoint's temporary folder, so a fault
    there leaves last/ whole (base, adapter and state of one iteration)."""
    import numpy_gpt.nn.lora as lora

    folder, ckpt = tiny_chat
    out = tmp_path / "ft"
    args = ["finetune", "--ckpt", str(ckpt), "--dataset", str(folder), "--lora",
            "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1", "--batch-size",
            "2", "--out", str(out), "--no-plot"]
    # adapter files: last/ then best/ at iteration 0; last/ at iteration 3 is the third
    monkeypatch.setattr(lora, "save_file", fail_on_call(3, disk_full(), lora.save_file))
    assert main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"error: cannot write {out / 'last/adapter/adapter.safetensors'}: {ENOSPC}; "
                    f"the checkpoint at iteration 0 in {out / 'last'} is intact; free space "
                    f"and run with --resume --out {out}")
    assert load_trainer_state(out / "last")["iter"] == 0
    assert (out / "last" / "adapter" / "adapter.safetensors").is_file()
    no_leftovers(out)
    monkeypatch.undo()
    assert main(["finetune", "--resume", "--out", str(out), "--no-plot"]) == 0
    assert (out / "merged" / "model.safetensors").is_file()


def tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk(data, reference, tmp_path):
    """A tmpfs filled up so that the second checkpoint cannot be written (only where this
    machine lets us mount one: root, and mount allowed)."""
    disk = tmp_path / "disk"
    if not tmpfs(disk, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected faults cover it")
    try:
        out = disk / "run"
        probe = tmp_path / "probe"
        assert main(["train", *flags(data, probe, 10), "--no-plot"]) == 0
        size = sum(-(-p.stat().st_size // 4096) * 4096 for p in probe.rglob("*") if p.is_file())
        stat = os.statvfs(disk)
        free = stat.f_bavail * stat.f_frsize
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (free - size - size // 3))  # room for one more last/, no more
        cmd = [sys.executable, "-m", "numpy_gpt", "train", *flags(data, out), "--no-plot"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 1, done.stdout + done.stderr
        line = one_error_line(done.stderr)
        assert f": {ENOSPC}; the checkpoint at iteration " in line
        assert f"in {out / 'last'} is intact; free space and run with --resume" in line
        at = load_trainer_state(out / "last")["iter"]
        load_checkpoint(out / "last")
        no_leftovers(out)
        filler.unlink()  # free space
        done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert f"resuming {out / 'last'} from iteration {at}" in done.stdout
        same_params(load_checkpoint(out / "last")[1], reference[30])
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---------------------------------------------------------------------------- signals


def start(data: Path, out: Path, *extra: str, step_s: float = 0.02, save_s: float = 0.0,
          eval_s: float = 0.0, max_iters: int = 60) -> subprocess.Popen:
    cmd = [sys.executable, str(RUNNER), str(step_s), str(save_s), str(eval_s), "train",
           *flags(data, out, max_iters), "--no-plot", *extra]
    return subprocess.Popen(cmd, cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(check, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not check():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def checkpoint_at_least(out: Path, it: int):
    state = out / "last" / checkpoint.TRAINER_STATE_FILE
    return lambda: state.is_file() and json.loads(state.read_text())["iter"] >= it


@pytest.mark.parametrize("sig, when", [
    ("SIGTERM", "at once"),          # during start-up or the first evaluation
    ("SIGTERM", "after a checkpoint"),
    ("SIGHUP", "after a checkpoint"),
    ("SIGINT", "after a checkpoint"),
    ("SIGTERM", 0.35),               # a random moment: seconds after the lock is taken
    ("SIGTERM", 0.8),
])
def test_a_stop_signal_saves_and_resume_is_bit_identical(sig, when, data, reference, tmp_path):
    signum = getattr(signal, sig)
    out = tmp_path / "run"
    proc = start(data, out)
    if when == "after a checkpoint":
        wait_for(checkpoint_at_least(out, 10), proc)
    else:
        wait_for(lambda: (out / LOCK_FILE).exists(), proc)
        if isinstance(when, float):
            time.sleep(np.random.default_rng().uniform(0, when))
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    it = load_trainer_state(out / "last")["iter"]
    assert 0 <= it < 60
    assert f"interrupted by {sig} at iter {it}: saved {out / 'last'}; continue with --resume " \
           f"--out {out}" in stdout
    assert f"{sig}: stopping at the next batch and saving the last completed step" in stderr
    assert "Traceback" not in stderr
    assert not (out / LOCK_FILE).exists()
    no_leftovers(out)
    done = subprocess.run([sys.executable, "-m", "numpy_gpt", "train",
                           *flags(data, out, 60), "--no-plot", "--resume"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ,
                                                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    same_params(load_checkpoint(out / "last")[1], reference[60])


def test_sigterm_during_an_evaluation_stops_within_seconds(data, reference, tmp_path):
    """Evaluation batches of 0.5 s, 200 per split (200 s per evaluation): SIGTERM in the
    middle of the first evaluation ends the run within a few seconds (the flag is looked at
    between batches), the evaluation is dropped (no log line), last/ holds iteration 0 ready
    to evaluate again, and --resume ends bit-identical to an undisturbed run. (Stops in the
    middle of a later evaluation and between micro-batches: tests/training/test_train.py.)"""
    out = tmp_path / "run"
    marker = tmp_path / "evaluating"
    proc = start(data, out, "--eval-iters", "200", eval_s=0.5, max_iters=30)
    wait_for(marker.exists, proc)
    time.sleep(0.6)  # a batch or two into it
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 143, stderr
    assert took < 5.0, took  # without the checks between batches: ~200 s
    state = load_trainer_state(out / "last")
    assert state["evaluated"] is False
    assert f"interrupted by SIGTERM at iter {state['iter']}: saved {out / 'last'}" in stdout
    log = [json.loads(line)["iter"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert state["iter"] not in log  # the evaluation cut short is not logged
    no_leftovers(out)
    assert main(["train", *flags(data, out, 30), "--no-plot", "--resume"]) == 0
    same_params(load_checkpoint(out / "last")[1], reference[30])
    log = [json.loads(line)["iter"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert log == [0, 10, 20, 30]


def test_a_second_signal_stops_at_once_without_a_half_written_checkpoint(data, tmp_path):
    """The second SIGTERM lands while the stop's checkpoint is being written: that one is
    abandoned whole, the previous last/ stays, and the line says which iteration it holds."""
    out = tmp_path / "run"
    proc = start(data, out, save_s=3.0)
    wait_for(checkpoint_at_least(out, 10), proc)
    before = load_trainer_state(out / "last")["iter"]
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(p.name.startswith(".last.tmp-") for p in out.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-1] == (
        f"stopped at once by a second SIGTERM, without saving: {out / 'last'} (iteration "
        f"{before}) is intact; continue with --resume --out {out}")
    assert load_trainer_state(out / "last")["iter"] == before
    load_checkpoint(out / "last")
    no_leftovers(out)
    assert not (out / LOCK_FILE).exists()


def test_an_interrupted_folder_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    """A signal between the two renames of the swap: the old folder is put back."""
    old, new = tmp_path / "last", tmp_path / ".last.tmp-1"
    old.mkdir()
    (old / "f").write_text("old")
    new.mkdir()
    (new / "f").write_text("new")
    real = os.replace

    def replace(src, dst):
        if Path(src) == new:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(new, old)
    assert (old / "f").read_text() == "old"


def test_resume_after_a_kill_in_the_middle_of_the_swap(data, reference, tmp_path, capsys):
    """SIGKILL between the swap's two renames (nothing can run then) leaves last/ moved aside
    as .last.old-PID; --resume puts it back and goes on."""
    out = tmp_path / "run"
    # the reference's schedule (decay at its 30): a run's decay point is kept on resume
    assert main(["train", *flags(data, out, 10), "--no-plot", "--lr-decay-iters", "30"]) == 0
    os.replace(out / "last", out / ".last.old-12345")
    assert main(["train", *flags(data, out, 30), "--no-plot", "--resume"]) == 0
    assert f"resuming {out / 'last'} from iteration 10" in capsys.readouterr().out
    same_params(load_checkpoint(out / "last")[1], reference[30])
    no_leftovers(out)


# ---------------------------------------------------------------------------- the run lock


def test_two_runs_started_at_once_on_one_folder(data, tmp_path):
    """Exactly one runs; the other gets one line naming the first's pid and writes nothing."""
    out = tmp_path / "run"
    # slow steps (3 s of training): the second starts long before the first could finish
    procs = [start(data, out, step_s=0.1, max_iters=30) for _ in range(2)]
    results = [(p, *p.communicate(timeout=120)) for p in procs]
    ok = [r for r in results if r[0].returncode == 0]
    refused = [r for r in results if r[0].returncode != 0]
    assert len(ok) == 1 and len(refused) == 1, [(p.returncode, e) for p, _, e in results]
    winner, loser = ok[0][0], refused[0]
    assert loser[0].returncode == 1
    assert one_error_line(loser[2]) == (
        f"error: another training run (pid {winner.pid}) is writing to {out}; wait for it to "
        f"finish or stop it, or pass --out DIR for a new folder")
    assert load_trainer_state(out / "last")["iter"] == 30
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [0, 10, 20, 30]  # one run's log, not two interleaved
    assert not (out / LOCK_FILE).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(dead), "host": "x"}))
    assert main(["train", *flags(data, out, 10), "--no-plot"]) == 0
    assert f"{out} was locked by pid {dead}, which is no longer running" in capsys.readouterr().out
    assert not (out / LOCK_FILE).exists()


def test_run_lock_in_one_process(tmp_path):
    """flock locks belong to open files, so a second RunLock in the same process is refused
    too; a refused lock on a folder it created leaves no folder behind."""
    folder = tmp_path / "a" / "run"
    with RunLock(folder):
        with pytest.raises(RunLockError, match=f"another run \\(pid {os.getpid()}\\)"):
            RunLock(folder).acquire()
        assert folder.is_dir()
    assert not (folder / LOCK_FILE).exists()
    lock = RunLock(tmp_path / "b").acquire()
    lock.release()
    assert not (tmp_path / "b").exists()  # created for the lock, empty: removed


def test_a_refused_run_touches_nothing(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *flags(data, out, 10), "--no-plot"]) == 0
    before = sorted(p.name for p in out.iterdir())
    with RunLock(out):
        assert main(["train", *flags(data, out, 20), "--no-plot", "--resume"]) == 1
    assert "is writing to" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == before
    assert load_trainer_state(out / "last")["iter"] == 10


# ---------------------------------------------------------------------------- prepared data


def test_two_preparations_of_one_folder_take_turns(tmp_path, monkeypatch):
    """Two runs that prepare the same dataset at the same moment: the second waits for the
    first's lock, then finds the folder up to date (it is written once, never interleaved)."""
    import threading

    import numpy_gpt.data.prepare as prep

    (tmp_path / "input.txt").write_text(TEXT)
    out = tmp_path / "prepared"
    writes = []
    real = prep.write_folder
    monkeypatch.setattr(prep, "write_folder", lambda *a: (writes.append(1), time.sleep(0.3),
                                                          real(*a)))
    done: list = []
    threads = [threading.Thread(target=lambda: done.append(prepare(
        tmp_path / "input.txt", out, fmt="text", tokenizer="char", reuse=True)))
        for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert done == [out, out] and writes == [1]
    assert not (out / LOCK_FILE).exists()
    from numpy_gpt.data.dataset import TokenDataset

    TokenDataset(out).check()



@pytest.mark.parametrize("damage", ["truncated train.bin", "changed token count"])
def test_inconsistent_prepared_data_is_refused_with_the_fix(damage, data, tmp_path, capsys):
    folder = tmp_path / "prepared"
    shutil.copytree(data, folder)
    if damage == "truncated train.bin":
        raw = (folder / "train.bin").read_bytes()
        (folder / "train.bin").write_bytes(raw[: len(raw) // 2])
    else:
        meta = json.loads((folder / "meta.json").read_text())
        meta["splits"]["val"]["tokens"] += 7
        (folder / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "run"
    args = ["train", *flags(folder, out, 10), "--no-plot"]
    assert main(args) == 1
    line = one_error_line(capsys.readouterr().err)
    split = "train" if damage.startswith("truncated") else "val"
    assert f"error: {folder / (split + '.bin')} has " in line
    assert "the prepared data is truncated or corrupt (changed since it was prepared)" in line
    fix = line.split("prepare it again: ")[1]
    assert fix.startswith(f"python -m numpy_gpt prepare --input {data.parent / 'input.txt'} "
                          "--format text --tokenizer char")
    assert not out.exists()  # refused before anything was written
    assert main(fix.split()[3:]) == 0  # the command it offers repairs the folder
    assert main(args) == 0
