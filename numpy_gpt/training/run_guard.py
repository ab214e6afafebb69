"""What the `train` and `finetune` commands do about the machine: signals and the run lock.

    stop = StopFlag()
    with lock_run(out_dir), stop.installed():     # one run per folder; SIGINT/TERM/HUP caught
        result = train(..., should_stop=stop)      # stops at the next batch, saves last/
    return stop.exit_status                        # 128 + the signal's number (130, 143, 129)

SIGTERM is what a cluster scheduler, `timeout`, systemd and `docker stop` send; SIGHUP what a
closed terminal or ssh session sends. Both are handled as Ctrl-C is: the first asks the loop
to stop, which it does at its next batch (it looks between evaluation batches and between the
micro-batches of a step, so within seconds, as schedulers allow between SIGTERM and SIGKILL),
dropping the unfinished evaluation or step and saving the last completed step in OUT/last
(numpy_gpt.training.train); a second stops at once (Aborted), and a checkpoint being written
at that moment is abandoned whole (it is written beside the old one and swapped in by rename:
numpy_gpt.files.safe_io), so last/ is the old one or the new one, never a mix. Handlers are
installed only here, the command-line layer, only while a run is under way, and the previous
ones are restored after. The first signal's notice is written with os.write:
a handler may run while the main thread is inside print(), and print is not reentrant.

Deliberately omits: SIGQUIT (its core dump is for debugging, not for stopping), SIGUSR1
checkpoint requests, and coordinating a stop across torchrun ranks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from ..files.run_lock import RunLock
from ..nn.checkpoint import CheckpointError, load_trainer_state

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


class Aborted(KeyboardInterrupt):
    """A second stop signal: the run ends at once, without saving."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopFlag:
    """Callable for train(should_stop=...): True once a stop signal has arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.old: dict[int, object] = {}  # the handlers installed() replaced

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else ""

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + (self.signum or signal.SIGINT)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch SIGINT, SIGTERM and SIGHUP inside the block; the old handlers after it.
        Off the main thread (where Python allows no handlers) nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        try:
            for s in STOP_SIGNALS:
                signal.signal(s, self._handle)
            yield self
        finally:
            self.restore()

    def restore(self) -> None:
        """Put the old handlers back now (training is over: Ctrl-C during the final sample
        or export interrupts it at once, as it would anywhere else)."""
        for s, handler in self.old.items():
            signal.signal(s, handler)
        self.old = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            # the run is ending: a third signal must not cut short the cleanup that keeps
            # the checkpoint whole (SIGKILL still works)
            for s in STOP_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            raise Aborted(signum)
        self.signum = signum
        how = "Ctrl-C" if signum == signal.SIGINT else signal_name(signum)
        os.write(2, f"\n{signal_name(signum)}: stopping at the next batch and saving the last "
                    f"completed step (send {how} again to stop at once, without saving)\n"
                    .encode())


def saved_state(out_dir: Path) -> str:
    """What a stopped or failed run leaves: 'OUT/last (iteration N) is intact; ...'."""
    try:
        it = load_trainer_state(out_dir / "last")["iter"]
    except (CheckpointError, KeyError, TypeError):
        return f"no checkpoint was saved in {out_dir}; start the run again"
    return (f"{out_dir / 'last'} (iteration {it}) is intact; continue with --resume "
            f"--out {out_dir}")


def aborted_line(e: Aborted, out_dir: Path) -> str:
    return f"stopped at once by a second {signal_name(e.signum)}, without saving: " \
           f"{saved_state(out_dir)}"


@contextlib.contextmanager
def lock_run(out_dir: Path, what: str = "training run", *, enabled: bool = True
             ) -> Iterator[RunLock | None]:
    """Hold OUT/.lock (numpy_gpt.files.run_lock) for the block; `enabled` False (a torchrun rank
    other than 0, which writes nothing) takes no lock."""
    if not enabled:
        yield None
        return
    with RunLock(out_dir, what=what) as lock:
        yield lock
