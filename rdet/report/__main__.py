"""``python -m rdet.report RUNS_DIR [--out DIR]``: tables and plots from every result record."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from rdet.cli import run_cli
from rdet.errors import ConfigError


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rdet.report import build_report

    p = argparse.ArgumentParser(prog="python -m rdet.report", description=__doc__)
    p.add_argument("runs_dir", help="folder searched recursively for result.json records")
    p.add_argument("--out", help="where to write report.md, CSVs and PNGs (default RUNS_DIR/report)")
    args = p.parse_args(argv)
    if not Path(args.runs_dir).is_dir():
        raise ConfigError(f"{args.runs_dir}: no such directory")
    rep = build_report(args.runs_dir, args.out)
    if not rep["records"]:
        raise ConfigError(f"{args.runs_dir}: no result.json records found")
    print(rep["markdown"])
    print("written: " + ", ".join(str(p) for p in list(rep["paths"].values()) + rep["plots"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
