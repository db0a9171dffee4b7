"""rdet's command lines: one module per console script (``rdet.cli.<module>``), each a thin
parser over a task in :mod:`rdet.tasks` (or a library package), all through :func:`run_cli`:
one-line user errors (exit 2), console logging on the main process, ``KEY VALUE`` overrides
anywhere among the flags. ``python -m rdet <command>`` reaches the same mains."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
import importlib
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rdet.core.errors import ConfigError, RdetError, error_message, release_frames
from rdet.core.collector import collect_all, defer_collection, settle

EXIT_USER_ERROR = 2

# command -> module in rdet.cli; console scripts are ``rdet-<command>`` (pyproject.toml)
COMMANDS: Dict[str, str] = {
    "pretrain": "pretrain", "classify": "classify", "evaluate": "evaluate", "select": "select", "study": "study",
    "report": "report", "convert": "convert", "train-det": "train_det", "backbones": "backbones",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag or value as a one-line :class:`ConfigError` (exit 2 through
    :func:`run_cli`) instead of argparse's usage block."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message} (--help lists the options)")


def module_doc(module: str) -> str:
    """The docstring of the rdet module ``module``, read from its source without importing it,
    so that a command's ``--help`` and a bad flag's one line come before torch is imported
    (about 4 s); the command imports its task once the flags parsed."""
    import ast

    path = Path(__file__).resolve().parents[1].joinpath(*module.split(".")[1:]).with_suffix(".py")
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def choices(key: str) -> Tuple[str, ...]:
    """The values the config key ``key`` accepts (its rule in ``rdet.config.schema``), for the
    flag that sets it; the empty value (unset) is left out."""
    from rdet.config.schema import rule_of

    return tuple(c for c in rule_of(key).choices if c != "")


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain process: the one that prints a CLI's summary."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging() -> None:
    """rdet's library loggers (``rdet.*``) print their INFO lines on the main process only; other
    torchrun ranks show warnings and errors. Called once by each CLI, never by the library."""
    log = logging.getLogger("rdet")
    for h in log.handlers:
        if getattr(h, "_rdet_console", False):
            # the same handler, on today's stdout (a caller may have replaced sys.stdout since)
            h.stream = sys.stdout  # not setStream: it flushes the old stream, which may be closed
            return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._rdet_console = True
    log.addHandler(handler)
    log.setLevel(logging.INFO if is_main_process() else logging.WARNING)


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Call ``main(argv)``; print an :class:`RdetError` as ``error: ...`` and return exit code 2."""
    setup_logging()
    # fvcore (imported with detectron2: train-det, and a study with detection or segmentation cells)
    # calls torch.jit.script at import time, which torch deprecates: a note for fvcore's developers
    # that would otherwise open every such command's output, refusals included
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    try:
        result = main(argv)
        _close_process_group()
    except RdetError as e:
        print(f"error: {error_message(e)}", file=sys.stderr)
        release_frames(e)
        _close_process_group()
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        print("interrupted", file=sys.stderr)
        release_frames(e)
        return 130
    finally:
        settle()  # a refusal, or a command whose work never settled (rdet.core.collector)
    return result if isinstance(result, int) else 0


def _close_process_group() -> None:
    """Free a torchrun job's process group before the interpreter exits, which joins gloo's
    threads: one still at work while the interpreter exits can abort the rank after its work is
    done ("terminate called without an active exception", exit -6: about one two-process
    ``rdet.cli.pretrain`` run in 60 on the loaded 2-core machine). The collection first frees
    what still holds the group in reference cycles (the trainer and its DDP model, frozen ones
    included: :func:`rdet.core.collector.collect_all`), so that destroying the group drops its
    last reference. Only after the work or a refusal: an interrupted or failed rank may have a
    collective in flight that joining would wait for until gloo's timeout. Read from
    ``sys.modules`` so a command that never imported torch does not import it here."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        collect_all()
        dist.destroy_process_group()


# A config key as written on a command line: upper-case dotted (SOLVER.EPOCHS, MODEL.TIMM.ARCH).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(flags, KEY VALUE overrides)``: every ``KEY VALUE`` pair wherever it stands, so that the
    one placement rule of every rdet command is "anywhere" (also after a flag that takes several
    values, such as ``--eps 0.25 0.5``, and in ``train-det``, whose detectron2 parser reads all
    that follows the first KEY as overrides)."""
    flags, opts, i = [], [], 0
    argv = list(argv)
    while i < len(argv):
        if _KEY.match(str(argv[i])) and i + 1 < len(argv):
            opts += [argv[i], argv[i + 1]]
            i += 2
        else:
            flags.append(argv[i])
            i += 1
    return flags, opts


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse flags and ``KEY VALUE`` config overrides, in any order (``SOLVER.EPOCHS 5 --resume``
    works as well as ``--resume SOLVER.EPOCHS 5``); the overrides land in ``args.opts``. A
    ``--data`` flag is taken as ``--data-root`` (its old spelling), with one line saying so."""
    flags, opts = split_overrides(sys.argv[1:] if argv is None else argv)
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, anywhere among the flags, e.g. SOLVER.EPOCHS 10 "
                             "(rdet/config/defaults.py lists the keys)")
    args = parser.parse_intermixed_args(flags)
    args.opts = list(args.opts) + opts
    return args


def add_data_root(parser: argparse.ArgumentParser, help: str) -> None:
    """Every command's dataset-root flag: ``--data-root`` (``DATA.ROOT``); ``--data``, the old
    spelling of pretrain and evaluate, still works and says once that it is the old one."""
    parser.add_argument("--data-root", help=f"{help} (DATA.ROOT; default $RDET_DATASETS or ./datasets)")
    parser.add_argument("--data", dest="data_root", action=_OldSpelling, help=argparse.SUPPRESS)


class _OldSpelling(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is the old spelling of --data-root", file=sys.stderr)
        setattr(namespace, self.dest, values)


def entry_point(fn: Callable[[Optional[Sequence[str]]], object]) -> Callable[[Optional[Sequence[str]]], int]:
    """The console-script ``main`` of a CLI module: ``fn`` run through :func:`run_cli`. Called
    without arguments it is the process's own command (a console script, a ``python -m`` form, a
    torchrun rank), whose start and exit :func:`rdet.core.collector.defer_collection` shortens."""
    def main(argv: Optional[Sequence[str]] = None) -> int:
        if argv is None:
            defer_collection()
        return run_cli(fn, argv)

    main.__doc__ = f"Console-script entry point of {fn.__module__}: user errors are one line, exit code 2."
    return main


def dispatch(argv: Sequence[str], commands: Dict[str, str] = COMMANDS) -> int:
    """``python -m rdet <command> [args]``: hand ``args`` to ``rdet.cli.<module>.main``."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m rdet <command> [args]   (or rdet-<command> [args])\ncommands: " + ", ".join(commands))
        return 0 if argv else EXIT_USER_ERROR

    def unknown(_):
        raise ConfigError(f"unknown command {argv[0]!r}; the commands are: {', '.join(commands)}")

    if argv[0] not in commands:
        return run_cli(unknown, argv)
    module = importlib.import_module(f"rdet.cli.{commands[argv[0]]}")
    return module.main(list(argv[1:]))
