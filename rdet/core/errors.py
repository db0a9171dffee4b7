"""Errors a user can cause. The CLIs catch :class:`RdetError` once and print it as one line.

Programming errors (bugs) are not wrapped: they stay tracebacks.
"""
import traceback


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


def error_message(e: BaseException) -> str:
    """An error's message. One raised in a DataLoader worker comes back re-wrapped by torch
    ("Caught X in DataLoader worker process N. Original Traceback ..."): its message is the
    traceback's last line, after the exception's class name."""
    text = str(e)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def release_frames(e: BaseException) -> None:
    """Free what the frames of a handled error held (a DataLoader's worker processes, a model) now,
    not at some later garbage collection. torch re-raises a loader worker's error from a frame
    that refers to the error: a cycle through the traceback keeps the iterator alive, and when the
    collector finally frees it torch waits 5 s for workers whose queues it has already closed. For
    callers that go on after reporting the error (the CLIs' ``main`` called in-process, a study's
    next cell)."""
    traceback.clear_frames(e.__traceback__)
