"""Writing a file so that a crash leaves either the old file or the new one, never half of one.

The content goes to a temporary file in the target's folder (`.NAME.XXXX.tmp`), which is flushed,
fsynced and renamed over the target; the folder is fsynced too. A writer killed before the rename
leaves only its temporary, which `remove_temporaries` deletes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMPORARY = ".*.tmp"  # the glob of the temporaries this module writes


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_beside(target: Path) -> Path:
    """A fresh, unused temporary path in the target's folder (created empty)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_write(target: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """A file to write `target`'s new content to; it replaces `target` when the block ends."""
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


def write_text(target: Path, text: str) -> None:
    with atomic_write(target, "w") as f:
        f.write(text)


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
