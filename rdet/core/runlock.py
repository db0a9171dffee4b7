"""One run per output folder: an exclusive ``flock`` on ``<folder>/.rdet.lock``.

Two runs writing the same folder silently overwrite each other's checkpoints and records. The
first run holds an exclusive, non-blocking ``flock`` on the lock file (with its pid written inside,
for the second run's message); a second run is refused at once with one line naming that pid.
The kernel drops a ``flock`` when its process dies, so a killed run never leaves a stale lock; a
cleanly finished one also removes the file.

``flock`` locks an open file, not a path. Because the file is removed on release, a process that
opened the old file just before its removal could lock an unlinked inode while a third process
creates and locks a new one; after locking, the holder therefore checks that the path still names
the inode it locked, and retries otherwise.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from rdet.core.errors import RdetError

LOCK_NAME = ".rdet.lock"


class OutputLockedError(RdetError):
    """Another live process holds the output folder."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "a process whose pid is not written yet"


def _try_lock(path: Path) -> int:
    """An open descriptor on ``path`` holding its exclusive lock; raises when another process has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputLockedError(
                    f"{path.parent}: in use by another rdet run ({_holder(path)}); wait for it to finish "
                    f"or choose another output folder") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file its holder removed meanwhile: lock the current one


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``directory`` (which must exist) for the duration of the ``with`` block.

    Raises :class:`OutputLockedError` (one line, the holder's pid) when another process holds it.
    Yields the lock file's path.
    """
    path = Path(directory) / LOCK_NAME
    fd = _try_lock(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still locked: nobody else can be between our unlink and close
        os.close(fd)
