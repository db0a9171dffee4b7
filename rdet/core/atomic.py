"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or a bad input therefore never leaves a partial output file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it onto ``path`` on success.

    The directory must exist (a missing output directory is the caller's error to report).
    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically (a killed run never leaves a truncated checkpoint)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete the temporary files :func:`atomic_path` leaves when its process is killed mid-write
    (``.NAME.XXXX.tmp``); call only while holding the folder's lock. Returns how many."""
    n = 0
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()
            n += 1
    return n
