"""What every rdet command line shares: one-line user errors, console logging, ``KEY VALUE``
overrides anywhere among the flags."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from rdet.core.errors import RdetError

EXIT_USER_ERROR = 2


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that prints a CLI's summary."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging() -> None:
    """rdet's library loggers (``rdet.*``) print their INFO lines on the main process only; other
    torchrun ranks show warnings and errors. Called once by each CLI, never by the library."""
    log = logging.getLogger("rdet")
    if any(getattr(h, "_rdet_console", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._rdet_console = True
    log.addHandler(handler)
    log.setLevel(logging.INFO if is_main_process() else logging.WARNING)


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Call ``main(argv)``; print an :class:`RdetError` as ``error: ...`` and return exit code 2."""
    setup_logging()
    try:
        result = main(argv)
    except RdetError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def _one_line(e: BaseException) -> str:
    """The message of an rdet error. One raised in a DataLoader worker comes back re-wrapped by
    torch ("Caught X in DataLoader worker process N. Original Traceback ..."): its message is the
    traceback's last line, after the exception's class name."""
    text = str(e)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse flags and trailing ``KEY VALUE`` config overrides, in any order
    (``SOLVER.EPOCHS 5 --resume`` works as well as ``--resume SOLVER.EPOCHS 5``); the overrides
    land in ``args.opts``."""
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.EPOCHS 10 (rdet/config/defaults.py lists the keys)")
    return parser.parse_intermixed_args(argv)
