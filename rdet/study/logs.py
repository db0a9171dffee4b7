"""Where a study's output goes: a few lines per cell on the console (logger ``rdet.study``), each
cell's whole output in its own ``<cell folder>/log.txt``.

While a cell runs, :func:`cell_log` sends everything the process writes there: Python's
``sys.stdout``/``sys.stderr``, file descriptors 1 and 2 (subprocesses, C extensions) and, through
a ``logging.FileHandler`` on the root logger, every library logger at INFO. Detectron2 cells run
with ``console=False``, so detectron2 writes its log to the same file (it is the run's
``OUTPUT_DIR/log.txt``) and nowhere else.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator, TextIO

LOG_NAME = "log.txt"
logger = logging.getLogger("rdet.study")


class _StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is when a line is logged (not when the handler was made)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_console() -> None:
    """One console handler on the ``rdet.study`` logger (idempotent): ``[study HH:MM:SS] ...``."""
    if any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        return
    h = _StdoutHandler()
    h.setFormatter(logging.Formatter("[study %(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its lines are console lines, not part of a cell's log


@contextlib.contextmanager
def cell_log(path: Path, title: str) -> Iterator[TextIO]:
    """Run the block with all output appended to ``path``; yields a stream to the real console
    (for progress lines). An exception's traceback is written to the log before it propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in (sys.stdout, sys.stderr):
        s.flush()
    saved_fds = (os.dup(1), os.dup(2))
    try:
        on_fd1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # replaced by a capture object (pytest, IDEs)
        on_fd1 = False
    # the console must not follow fd 1 into the log
    console = os.fdopen(os.dup(saved_fds[0]), "w", buffering=1) if on_fd1 else sys.stdout
    f = open(path, "a", buffering=1)
    f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {title} (pid {os.getpid()} on {socket.gethostname()})\n")
    f.flush()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    old_level = root.level
    try:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        root.addHandler(handler)
        root.setLevel(min(old_level, logging.INFO) if old_level else logging.INFO)
        with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                yield console
            except SystemExit as e:  # how submitit ends a job it requeued: no traceback, one line
                f.write(f"----- {time.strftime('%H:%M:%S')} the process ends (SystemExit {e.code}); a requeued "
                        f"job runs the cell again\n")
                raise
            except BaseException:
                traceback.print_exc(file=f)
                raise
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        f.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        f.close()
        if on_fd1:
            console.close()


class Heartbeat:
    """While a long cell runs, every ``every_s`` seconds one console line: its running time and
    the last line of its log (e.g. ``epoch 3/30: loss ...``)."""

    def __init__(self, label: str, log_path: Path, console: TextIO, every_s: float):
        self.label, self.log_path, self.console, self.every_s = label, log_path, console, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.time()

    def __enter__(self) -> "Heartbeat":
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            last = last_line(self.log_path)
            self.console.write(f"[study {time.strftime('%H:%M:%S')}]   {self.label}: running "
                               f"{time.time() - self._start:.0f} s{': ' + last if last else ''}\n")
            self.console.flush()


def last_line(path: Path, width: int = 100) -> str:
    """The last non-empty line of a text file (at most ``width`` characters)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""
