"""``python -m rdet report RUNS_DIR [--out DIR]``: tables and plots from every result record.

An unreadable ``result.json`` is skipped and named (on stderr and in the report); a folder with no
readable record is a one-line error, and nothing is written."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, entry_point
from rdet.core.errors import ConfigError


def _main(argv: Optional[Sequence[str]] = None) -> int:
    from rdet.report import build_report

    p = ArgumentParser(prog="python -m rdet report", description=__doc__)
    p.add_argument("runs_dir", help="folder searched recursively for result.json records")
    p.add_argument("--out", help="where to write report.md, CSVs and PNGs (default RUNS_DIR/report)")
    args = p.parse_args(argv)
    if not Path(args.runs_dir).is_dir():
        raise ConfigError(f"{args.runs_dir}: no such directory")
    import rdet.study  # noqa: F401 (registers the task kinds and, with them, their report sections)

    rep = build_report(args.runs_dir, args.out)
    for _, message in rep["skipped"]:
        print(f"warning: skipped {message}", file=sys.stderr)
    print(rep["markdown"])
    print("written: " + ", ".join(str(p) for p in list(rep["paths"].values()) + rep["plots"]))
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
