"""``python -m rdet <command> [args]``: the module form of every ``rdet-<command>`` console script.

Both forms call the same ``rdet.cli.<module>.main``, so flags, one-line errors and exit codes
are identical."""
from __future__ import annotations

import sys

from rdet.cli import COMMANDS, dispatch
from rdet.core.collector import defer_collection

if __name__ == "__main__":
    defer_collection()  # this process is the command's own (rdet.core.collector)
    raise SystemExit(dispatch(sys.argv[1:], COMMANDS))
