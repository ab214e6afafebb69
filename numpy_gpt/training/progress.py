"""What a training command prints while it runs: the console side of train.Reporter.

On a terminal: a tqdm bar (loss, lr, tokens/s) on stderr. Whatever stdout is: one line per
evaluation; after the first timed steps of a long run, an estimate of the time left; and when
stderr is not a terminal (output piped or logged, where tqdm stays silent) a plain progress
line every HEARTBEAT_S seconds, so a log never goes quiet for minutes between evaluations.

Deliberately omits: ETA smoothing beyond a running mean, and colours.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from .train import Reporter

HEARTBEAT_S = 30.0  # a plain progress line this often when stderr is not a terminal
ESTIMATE_AFTER = 10  # timed steps (after one warm-up step) before the duration estimate
LONG_RUN_S = 60.0  # runs expected to take less than this get no estimate line


class ConsoleReporter(Reporter):
    """A tqdm bar on a terminal, plain lines otherwise, evaluations and estimates on stdout.
    `clock` and `tty` are for tests."""

    def __init__(self, log_interval: int, *, heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic, tty: bool | None = None) -> None:
        self.log_interval, self.heartbeat_s, self.clock = log_interval, heartbeat_s, clock
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        self.total = self.initial = self.steps = 0
        self.t_first = self.t_last_line = 0.0  # clock at the first step / last plain line
        self.estimated = False

    def start(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.total, self.initial = total, initial
        self.t_last_line = self.clock()
        self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                        file=sys.stderr, disable=not self.tty)

    def step(self, it: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.bar.update(1)
        if it % self.log_interval == 0:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}",
                                 refresh=False)
        now = self.clock()
        self.steps += 1
        if self.steps == 1:  # the first step warms caches and allocators: time from its end
            self.t_first = now
        per_step = (now - self.t_first) / (self.steps - 1) if self.steps > 1 else None
        left = None if per_step is None else per_step * (self.total - it)
        if not self.estimated and self.steps == ESTIMATE_AFTER + 1:
            self.estimated = True
            if left >= LONG_RUN_S:
                self.message(f"estimated time left: {duration(left)} for {self.total - it:,} "
                             f"more iterations ({per_step:.3g} s/iter over the last "
                             f"{ESTIMATE_AFTER}; evaluations come on top)")
        if not self.tty and now - self.t_last_line >= self.heartbeat_s:
            self.t_last_line = now
            eta = "" if left is None else f", ~{duration(left)} left"
            self.message(f"iter {it:,}/{self.total:,}: loss {loss:.4f}, lr {lr:.2e}, "
                         f"{tokens_per_s:,.0f} tok/s{eta}")

    def evaluation(self, r: dict) -> None:
        self.message(f"iter {r['iter']:>6}: train {r['train_loss']:.4f}, val {r['val_loss']:.4f}"
                     f" (ppl {r['val_ppl']:.2f}), lr {r['lr']:.2e}, {r['elapsed_s']:.1f} s"
                     + (" *best*" if r["best"] else ""))

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text)
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
