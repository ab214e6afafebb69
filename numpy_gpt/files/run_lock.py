"""One run per output folder: OUT/.lock, held with fcntl.flock for as long as the run writes.

    with RunLock(out_dir):          # RunLockError naming the other run's pid if it is held
        train(...)

Why flock and not an O_EXCL lock file: the kernel releases a flock when its process dies,
however it dies (SIGKILL, the OOM killer, a power-off of the container), so a lock is never
left held by a run that no longer exists, and nothing has to guess from a pid whether the old
run is still alive (pids are reused, and a pid from another container or host means nothing
here). Two runs started at the same instant both open the file, and exactly one flock
succeeds. The file keeps the holder's pid and host so the refusal can name them; a file left
behind by a killed run is simply locked again (reclaimed) by the next run, which says so.

Subtle: the file is removed when the lock is released. Another process may have opened the
old file just before; after locking, the holder checks that the path still names the file it
locked (same inode) and starts again if not, so two runs can never both hold "the" lock.

Deliberately omits: Windows (no fcntl; the lock is skipped there), waiting for the other run,
and network filesystems whose flock is not shared between hosts.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock (see the module docstring)
    fcntl = None

LOCK_FILE = ".lock"


class RunLockError(RuntimeError):
    """Another live run holds the folder; the message names its pid and the way out."""


class RunLock:
    """An exclusive lock on a run folder. `wait`: block until it is free instead of failing
    (prepare uses it, so two runs preparing one dataset take turns). `reclaimed` is the pid
    of a killed run whose lock file was found and taken over, if any."""

    def __init__(self, folder: str | os.PathLike, *, what: str = "run", wait: bool = False):
        self.folder, self.what, self.wait = Path(folder), what, wait
        self.file = self.folder / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []
        self.reclaimed: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        missing = [d for d in (self.folder, *self.folder.parents) if not d.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.created = missing  # removed again on release if still empty, innermost first
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except OSError as e:
                holder = _read(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                self._release_folder()
                pid = holder.get("pid", "?")
                host = holder.get("host")
                where = "" if host in (None, socket.gethostname()) else f" on {host}"
                raise RunLockError(
                    f"another {self.what} (pid {pid}{where}) is writing to {self.folder}; wait "
                    f"for it to finish or stop it, or pass --out DIR for a new folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        old = _read(fd).get("pid")
        if isinstance(old, int) and old != os.getpid():
            self.reclaimed = old
        self.fd = fd
        try:  # the pid is only for the other run's message: a full disk must not stop us here
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        except OSError:
            pass
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.file.unlink(missing_ok=True)  # while still holding it (see the docstring)
        finally:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
        self._release_folder()

    def _release_folder(self) -> None:
        """Remove the folders the lock created, if nothing else was put in them (a run refused
        before writing anything leaves no trace)."""
        for d in self.created:
            try:
                d.rmdir()
            except OSError:
                break
        self.created = []

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
