"""Python's cyclic garbage collector at an rdet process's start and exit.

Importing torch and torchvision creates some 330,000 objects that live as long as the process
(timm and detectron2 add more). The collector walks all of them at every full collection: while
they are being imported, again at each full collection during the run, and several times when
the interpreter exits: about 1 s of a 5.3 s one-epoch ``python -m rdet.pretrain`` demo on the
2-core development machine (``python benchmarks/bench_startup.py``), paid again by every torchrun
rank and every study job.

:func:`defer_collection` (called where a command or a study job starts) makes collections rare
while the modules are imported and registers an exit handler. :func:`settle` (called where the
work starts, once the imports are done) collects once, moves everything still alive out of the
collector's sight (``gc.freeze``) and restores the usual thresholds; a path that never settles
still collects, only less often. The exit handler collects once, which finalises the cyclic
garbage there is, then freezes the survivors, so that the collections of the exit itself find
almost nothing to walk; their memory goes back with the process, as it would have.

Only a command's own process defers: a console script or ``python -m`` form (a CLI's ``main()``
called without arguments, torchrun's ranks included), ``python -m rdet <command>`` and a study's
job. A ``main(argv)`` called from other code (a test, a notebook) changes nothing in that process:
:func:`settle` there does nothing, and nothing is frozen that the process might later free."""
import atexit
import gc

# a first generation this large is rarely filled by imports alone, and still bounds what waits
_DEFERRED_GEN0 = 50_000

_saved = None  # the thresholds before defer_collection, while deferred
_exit_registered = False


def defer_collection() -> None:
    """Collect rarely until :func:`settle`; collect once, then freeze, at exit. Idempotent."""
    global _saved, _exit_registered
    if not _exit_registered:
        atexit.register(_collect_and_freeze)
        _exit_registered = True
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(max(_saved[0], _DEFERRED_GEN0), *_saved[1:])


def settle() -> None:
    """The imports are done: freeze what is alive and collect as usual again. Without
    :func:`defer_collection` before it (a library call), it does nothing."""
    global _saved
    if _saved is not None:
        _collect_and_freeze()  # garbage first: what is frozen is never collected
        gc.set_threshold(*_saved)
        _saved = None


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()


def collect_all() -> None:
    """Collect every cycle of garbage, what :func:`settle` froze included, then freeze again.

    Freezing keeps the closure cells of the functions running at that moment: a task's ``run``
    whose closures name its trainer (``lambda: ... trainer.epoch``) has that cell frozen, and the
    trainer stored in it later stays out of every collection with everything it holds. A rank
    calls this before destroying its process group (:func:`rdet.cli.run_cli`): the group is freed,
    and its threads joined, only once the trainer's DDP model is. About 0.15 s with torch,
    torchvision and timm loaded (385,000 frozen objects)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
