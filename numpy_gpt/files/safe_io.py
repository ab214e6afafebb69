"""Writing files so that a machine fault (disk full, a quota, a read-only mount) costs nothing
that was already good, and says so in one line.

    with staged_dir(out / "last") as tmp:         # write into tmp; renamed over last/ at the end
        ...
    write_bytes_atomic(path, data)                 # stage_file beside it, then os.replace
    append_line(path, text)                        # a failed append leaves the file as it was
    save_figure(fig, path)                         # matplotlib, same rule

Every writer turns an OSError (and safetensors' SafetensorError, which is how it reports an
OSError such as "No space left on device (os error 28)") into a WriteError naming the file
the user knows (the destination, not the temporary name) and the cause. Callers that know
more (the training loop knows which checkpoint is intact) add what is still safe and how to
continue. The rename that swaps a finished folder into place restores the old one if it is
interrupted halfway (a second Ctrl-C or SIGTERM), so a good folder is never left missing.

Deliberately omits: fsync (a power cut is not a fault this protects against), Windows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError


class WriteError(OSError):
    """A file could not be written. `file`: the destination; `cause`: why, in words. The
    message is one line; callers may extend it with what is still safe (`with_advice`)."""

    def __init__(self, file: str | os.PathLike, cause: str, advice: str = "") -> None:
        self.file, self.cause, self.advice = Path(file), cause, advice
        text = f"cannot write {self.file}: {cause}" + (f"; {advice}" if advice else "")
        super().__init__(text)
        self.errno = errno.ENOSPC if "space" in cause.lower() else None

    def with_advice(self, advice: str) -> WriteError:
        return WriteError(self.file, self.cause, advice)


WRITE_FAULTS = (OSError, SafetensorError)


def cause_of(e: BaseException) -> str:
    """'No space left on device', 'Permission denied', ... from an OSError or SafetensorError."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = " ".join(str(e).split())
    if "os error 28" in text or "No space left" in text:
        return "No space left on device"
    return text or type(e).__name__


@contextlib.contextmanager
def writing(file: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError / SafetensorError raised inside into a WriteError naming `file`."""
    try:
        yield
    except WriteError:
        raise
    except WRITE_FAULTS as e:
        raise WriteError(file, cause_of(e)) from None


@contextlib.contextmanager
def staged_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `dest`; when the block ends, it replaces `dest` (the old
    folder is removed only after the swap). On any error the temporary folder is removed and
    `dest` is untouched; a write fault names the file under `dest` it was writing."""
    dest = Path(dest)
    with writing(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        try:
            yield tmp
        except WriteError as e:  # name the file as it will be, not its temporary path
            if not e.file.is_relative_to(tmp):
                raise
            raise WriteError(dest / e.file.relative_to(tmp), e.cause, e.advice) from None
        except WRITE_FAULTS as e:
            name = getattr(e, "filename", None)
            raise WriteError(dest / Path(name).name if name else dest, cause_of(e)) from None
        with writing(dest):
            replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place. The old one is moved aside first and removed only
    after the swap; if the swap is interrupted (a signal, an error) the old one is put back."""
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(dst, old)
        os.replace(src, dst)
    finally:
        if not dst.exists() and old.exists():  # interrupted between the two renames
            os.replace(old, dst)
    shutil.rmtree(old, ignore_errors=True)


def recover_moved_aside(dst: str | os.PathLike) -> bool:
    """Put back the folder replace_dir moved aside, when `dst` is missing because the process
    was killed (SIGKILL: nothing runs) between the swap's two renames. True if it did."""
    dst = Path(dst)
    if dst.exists():
        return False
    olds = sorted(dst.parent.glob(f".{dst.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], dst)
    return True


def stage_file(path: str | os.PathLike, data: bytes) -> Path:
    """`data` written whole to a temporary file beside `path` (to be renamed over it); on a
    fault the temporary file is removed and a WriteError names `path`."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Path(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    tmp = stage_file(path, data)
    try:
        with writing(path):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` + newline; if the write fails the file is cut back to its old length,
    so a full disk never leaves a torn last line."""
    path = Path(path)
    with writing(path), open(path, "ab") as f:
        size = f.tell()
        try:
            f.write(line.encode("utf-8") + b"\n")
            f.flush()
        except BaseException:
            with contextlib.suppress(OSError):
                f.truncate(size)
            raise


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """matplotlib `fig` to `path` through a temporary file; the figure is closed either way."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        with writing(path):
            fig.savefig(tmp)
            os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
