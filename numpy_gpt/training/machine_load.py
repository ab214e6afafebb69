"""How loaded the machine was while something ran: load average and other processes' CPU.

    meter = LoadMeter()
    ...                                   # the work being measured
    meter.finish()   # {"loadavg_start": [1m, 5m, 15m], "loadavg_end": [...],
                     #  "others_cores": 0.4, "others_share": 0.2, "own_cores": 1.9, ...}

A timing taken on a shared machine means little without the load it was taken under. The
load average counts runnable threads (ours included); the CPU shares say who used the cores:
others = the machine's busy CPU-seconds over the interval (/proc/stat: user + nice + system +
irq + softirq + steal) minus this process's own (getrusage: all its threads), divided by the
wall time. `others_cores` 0.4 on a 2-core machine means other processes had 0.4 of a core on
average, `others_share` 0.2 of the machine.

/proc/stat counts in ticks (10 ms on most kernels) per core, so an interval shorter than
MIN_WALL_S cannot say who used the cores: its CPU fields are None rather than a share of
fifty machines read off one stray tick. Over longer intervals the rounding is clamped to what
is possible: others used between 0 and all the cores.

Deliberately omits: child processes (the NumPy twin's shards are threads of this process) and
anything but Linux (/proc/stat absent: the CPU fields are None, the load average may remain).
"""

from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded to 0.01; None where there is none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_cpu_seconds(stat_line: str | None = None) -> tuple[float, float] | None:
    """(busy, steal) CPU-seconds of all cores since boot, from /proc/stat's first line
    (`stat_line`: that line, for tests). busy = user + nice + system + irq + softirq + steal;
    guest time is counted inside user time already."""
    try:
        if stat_line is None:
            with open("/proc/stat", encoding="ascii") as f:
                stat_line = f.readline()
        fields = [int(v) for v in stat_line.split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def machine_busy_seconds(stat_line: str | None = None) -> float | None:
    """Busy CPU-seconds of all cores since boot (machine_cpu_seconds' first value)."""
    seconds = machine_cpu_seconds(stat_line)
    return None if seconds is None else seconds[0]


def own_cpu_seconds() -> float:
    """CPU-seconds this process has used, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo (`cpuinfo`: its text, for tests); else the
    platform's processor or machine name."""
    try:
        if cpuinfo is None:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


MIN_WALL_S = 0.5  # one tick per core is then at most 2 % of the share


class LoadMeter:
    """Readings at creation; finish() differences them (module docstring)."""

    def __init__(self) -> None:
        self.load0 = loadavg()
        self.t0 = time.perf_counter()
        self.busy0 = machine_busy_seconds()
        self.own0 = own_cpu_seconds()

    def finish(self) -> dict[str, Any]:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        busy, own = machine_busy_seconds(), own_cpu_seconds() - self.own0
        record: dict[str, Any] = {"loadavg_start": self.load0, "loadavg_end": loadavg(),
                                  "wall_s": round(wall, 3), "cores": cores(),
                                  "own_cores": round(own / wall, 3),
                                  "others_cores": None, "others_share": None}
        if busy is not None and self.busy0 is not None and wall >= MIN_WALL_S:
            # tick rounding can read a little below our own use, or above the machine
            others = min(max(busy - self.busy0 - own, 0.0) / wall, record["cores"])
            record["others_cores"] = round(others, 3)
            record["others_share"] = round(others / record["cores"], 3)
        return record
