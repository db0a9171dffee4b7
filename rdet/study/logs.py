"""Where a study's output goes: a few lines per cell on the console (logger ``rdet.study``), each
cell's whole output in its own ``<cell folder>/log.txt``.

While a cell runs, :func:`cell_log` sends everything the process writes there: Python's
``sys.stdout``/``sys.stderr``, file descriptors 1 and 2 (subprocesses, C extensions) and, through
a ``logging.FileHandler`` on the root logger, every library logger at INFO. Detectron2 cells run
with ``console=False``, so detectron2 writes its log to the same file (it is the run's
``OUTPUT_DIR/log.txt``) and nowhere else.
"""
from __future__ import annotations

import collections
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


class _CellFileHandler(logging.FileHandler):
    """The cell log's handler on the root logger, safe for records logged by signal handlers.

    Slurm's time-limit and requeue signals are handled in Python (submitit's handlers, rdet's
    checkpoint request), and those handlers log. Python runs a handler between two steps of the
    main thread, and also inside a file write that the signal interrupts, while that write holds
    the file's buffer: a record the handler logs to the same file then fails with "reentrant call
    inside BufferedWriter", and the error report, written to the same file, fails again and can
    end the cell. Here a record logged while this thread is already writing one waits in a queue,
    and the outer write adds it right after its own."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._writing = threading.local()
        self._waiting: collections.deque = collections.deque()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._writing, "on", False):  # a signal handler, inside this thread's write
            self._waiting.append(record)
            return
        self._writing.on = True
        try:
            super().emit(record)
            while self._waiting:
                super().emit(self._waiting.popleft())
        finally:
            self._writing.on = False

    def close(self) -> None:
        while self._waiting:
            super().emit(self._waiting.popleft())
        super().close()


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
    handler = _CellFileHandler(path)
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
