"""Errors a user can cause. The CLIs catch :class:`RdetError` once and print it as one line.

Programming errors (bugs) are not wrapped: they stay tracebacks.
"""


class RdetError(Exception):
    """Base class of every error caused by user input (files, names, options)."""


class CheckpointError(RdetError):
    """A weights file is missing, unreadable, or does not fit the requested architecture."""


class ArchError(RdetError):
    """An architecture name is not in the registry, or does not support the requested use."""


class DatasetError(RdetError):
    """A dataset is not on disk in the expected layout."""


class ConfigError(RdetError):
    """A config file or a KEY VALUE override is invalid."""


class RecordError(RdetError):
    """A ``result.json`` that is not a readable record (the message names the file)."""


class NonFiniteLossError(RdetError):
    """The training loss became NaN or infinite (lr too high, fp16 overflow, bad inputs); the
    message names the epoch and iteration. Raised by ``rdet.engine.trainer``."""


def first_line(e: BaseException, limit: int = 0) -> str:
    """An exception as one line: its message's first non-blank line (cut to ``limit`` characters
    when > 0), or its type's name when the message is empty or blank."""
    line = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "") or type(e).__name__
    return line[:limit] if limit > 0 else line
