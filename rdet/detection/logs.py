"""Where detectron2's log goes during one run.

``default_setup`` adds a console and an ``OUTPUT_DIR/log.txt`` handler to the ``detectron2`` and
``fvcore`` loggers each time it is called, and never removes them: a second run in the same
process (a study's next cell) would log twice on the console and also into the first run's file.
:func:`run_logging` removes the handlers a run added when it ends. With ``console=False``
the run's console handlers and anything printed while it runs (pycocotools' COCOeval prints its
progress and summary; Python warnings) go to the run's own ``log.txt`` instead of the terminal.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator

_LOGGERS = ("detectron2", "fvcore")


class _LineLogger(io.TextIOBase):
    """A text stream that logs each complete line (``print`` output) at INFO level."""

    def __init__(self, logger: logging.Logger):
        self.logger, self.buffer = logger, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line)
        return len(text)


@contextlib.contextmanager
def run_logging(cfg, args, console: bool = True) -> Iterator[None]:
    """Run detectron2's ``default_setup(cfg, args)`` (log file, environment and config dump,
    ``config.yaml``, seeds) for the run inside the ``with`` block; see the module docstring."""
    from detectron2.engine import default_setup

    loggers = [logging.getLogger(n) for n in _LOGGERS]
    before = {lg.name: list(lg.handlers) for lg in loggers}
    try:
        if console:
            default_setup(cfg, args)
            yield
            return
        discard = io.StringIO()
        with contextlib.redirect_stdout(discard):  # the console handlers it adds write here...
            default_setup(cfg, args)
        for lg in loggers:  # ...and are dropped, leaving the log files
            lg.handlers = [h for h in lg.handlers if getattr(h, "stream", None) is not discard]
        printed = logging.getLogger("detectron2.stdout")
        with contextlib.redirect_stdout(_LineLogger(printed)), warnings.catch_warnings():
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
                printed.warning(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
            yield
    finally:
        for lg in loggers:
            for h in lg.handlers:
                h.flush()
            lg.handlers = before[lg.name]
        from detectron2.utils.logger import setup_logger

        if hasattr(setup_logger, "cache_clear"):  # older detectron2 caches it: let the next run add handlers
            setup_logger.cache_clear()
