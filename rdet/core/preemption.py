"""Checkpoint now, then stop: a request from outside the training loop (a cluster's time-limit or
preemption warning, ``rdet.study.jobs.CellJob``).

The request arrives at an arbitrary point of the main thread -- a signal handler may run in the
middle of an optimizer step, where a checkpoint would be torn -- so :func:`request` only records
what to do afterwards. The trainer looks at :func:`pending` at its next log boundary (every
``RUNTIME.LOG_EVERY`` iterations; the processes agree through the all-reduce they do there
anyway), writes a checkpoint (mid-epoch, or the epoch's own at its last batch), and the run
directory's save calls :func:`checkpointed`, which runs the recorded action from ordinary code
(submitit: requeue the job and exit). A run with no boundary coming (start-up, final evaluation,
a task without this trainer) never calls it: the requester keeps its own deadline for that.
"""
from __future__ import annotations

from typing import Callable, Optional

_then: Optional[Callable[[], None]] = None


def request(then: Callable[[], None]) -> None:
    """Ask the running trainer for a checkpoint at its next boundary, then ``then()``."""
    global _then
    _then = then


def pending() -> bool:
    return _then is not None


def cancel() -> Optional[Callable[[], None]]:
    """Withdraw the request; the action it held (to run it some other way), or None."""
    global _then
    then, _then = _then, None
    return then


def checkpointed() -> None:
    """A checkpoint was just written: run the pending action, if any (it may end the process)."""
    then = cancel()
    if then is not None:
        then()
