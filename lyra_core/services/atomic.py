"""Writing files so that a crash leaves either the old file or the new one, never half of one,
and so that a full disk is a user's condition, not a traceback.

The content goes to a temporary file in the target's folder (`.NAME.XXXX.tmp`), which is flushed,
fsynced and renamed over the target; the folder is fsynced too. A writer killed before the rename
leaves only its temporary, which `remove_temporaries` deletes. An appended line (`append_line`)
is written whole or cut off again.

Every writer here, and `writing` around any other, turns a full disk or a read-only, unwritable
or vanished folder into a `WriteError` (lyra_core.errors): what could not be written, where, why,
how much space is free and what to do; the CLI prints it as one line and exits 2. Any other
failure passes unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lyra_core.errors import WriteError

TEMPORARY = ".*.tmp"  # the glob of the temporaries this module writes
FULL = (errno.ENOSPC, errno.EDQUOT)  # no room: the disk or the user's quota
DENIED = (errno.ENOENT, errno.EACCES, errno.EPERM)  # a folder gone or not writable
IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST)  # a file where a folder should be


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_beside(target: Path) -> Path:
    """A fresh, unused temporary path in the target's folder, created empty with the
    permissions a new file gets (the umask's, as `open` gives; not mkstemp's owner-only)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def _existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """The space free to write on the filesystem holding `path` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(path)).free


def size_text(n: float) -> str:
    """Bytes as a person reads them: `512 B`, `3.2 MiB`, `1.5 GiB`."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def _folder(target: Path) -> Path:
    return target if target.is_dir() else target.parent


def _unwritable(exc: BaseException | None, folder: Path) -> OSError | None:
    """The OSError in `exc`'s chain that says `folder` takes no writes, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and (
            exc.errno in (*FULL, errno.EROFS)
            or (exc.errno in DENIED and not (folder.is_dir() and os.access(folder, os.W_OK)))
            or (exc.errno in IN_THE_WAY and _existing(folder).is_file())
        ):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def write_error(exc: BaseException, target: Path, what: str = "") -> WriteError | None:
    """The WriteError that `exc`, met while writing `target`, amounts to; None if it is not a
    full disk or a read-only, unwritable or vanished folder."""
    folder = _folder(target)
    cause = _unwritable(exc, folder)
    if cause is None:
        return None
    if cause.errno in FULL:
        free = size_text(free_bytes(folder))
        reason, remedy = f"the disk is full ({free} free there)", "free some space"
    elif cause.errno == errno.EROFS:
        reason, remedy = "its filesystem is read-only", "mount it writable or write elsewhere"
    elif _existing(folder).is_file():
        reason, remedy = (
            f"{_existing(folder)} is a file, not a folder",
            "move it or write elsewhere",
        )
    elif not folder.is_dir():
        reason, remedy = f"the folder {folder} is gone", "restore it or write elsewhere"
    else:
        reason, remedy = f"the folder {folder} is not writable", "make it writable"
    return WriteError(target, reason, remedy, what)


@contextlib.contextmanager
def writing(target: Path, what: str = "", instead: str = "", then: str = "") -> Iterator[None]:
    """Whatever the block writes to `target` (a file or a folder): a full disk or an unwritable
    folder raises a WriteError naming `what` was written, another way out (`instead`) and what
    to do once it is fixed (`then`); see `WriteError.about`."""
    try:
        yield
    except WriteError as exc:
        raise exc.about(what, instead, then) from exc.__cause__
    except Exception as exc:
        error = write_error(exc, target, what)
        if error is None:
            raise
        raise error.about(instead=instead, then=then) from exc


@contextlib.contextmanager
def atomic_write(target: Path, mode: str = "wb", what: str = "") -> Iterator[IO[Any]]:
    """A file to write `target`'s new content to; it replaces `target` when the block ends."""
    with writing(target, what):
        tmp = temporary_beside(target)
        try:
            with tmp.open(mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_folder(target.parent)


def write_text(target: Path, text: str, what: str = "") -> None:
    with atomic_write(target, "w", what) as f:
        f.write(text)


def write_bytes(target: Path, data: bytes, what: str = "") -> None:
    """`data` as `target`, atomically (render a format whose writer wants a file into a
    `io.BytesIO` first: C libraries writing to a full disk may not raise, or may abort)."""
    with atomic_write(target, "wb", what) as f:
        f.write(data)


def append_line(target: Path, line: str, what: str = "") -> None:
    """Append `line` (ending in a newline) to `target`: all of it, or nothing."""
    data = memoryview(line.encode("utf-8"))
    with writing(target, what), target.open("ab", buffering=0) as f:
        end = f.seek(0, os.SEEK_END)
        try:
            while data:
                data = data[f.write(data) :]
        except BaseException:
            f.truncate(end)
            raise


def remove_temporaries(folder: Path, older_than: float = 0.0) -> int:
    """Delete the temporaries crashed writers left in `folder` (older than `older_than` seconds)."""
    if not folder.is_dir():
        return 0
    cutoff, removed = time.time() - older_than, 0
    for tmp in folder.glob(TEMPORARY):
        with contextlib.suppress(OSError):
            if older_than <= 0 or tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
    return removed
