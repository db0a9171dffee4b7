"""``python -m rdet study [STUDY.yaml]``: run every cell of a study (skipping finished ones), then
print the report. Without an argument: the offline miniature study, configs/study_demo.yaml.

The console shows a few lines per cell; each cell's whole output is in ``<its folder>/log.txt``."""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, entry_point
from rdet.config import CONFIG_DIR

DEMO = CONFIG_DIR / "study_demo.yaml"


def _main(argv: Optional[Sequence[str]] = None) -> int:
    from rdet.study import run_study

    p = ArgumentParser(prog="python -m rdet study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="?", default=str(DEMO), help="study YAML (default: the offline demo)")
    p.add_argument("--no-report", action="store_true", help="run the cells only")
    p.add_argument("--kinds", action="store_true",
                   help="list the registered task kinds (study section, cell kind, module) and exit")
    p.add_argument("--heartbeat", type=float, default=60.0, metavar="S",
                   help="while a local cell runs, a progress line every S seconds (0: none)")
    args = p.parse_args(argv)
    if args.kinds:
        import rdet.study  # noqa: F401 - registers the built-in kinds
        from rdet.study.base import kinds_table

        rows = [("section", "kind", "module", "what")] + kinds_table()
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
        return 0
    start = time.time()
    study = run_study(args.study, heartbeat_s=args.heartbeat)
    if not args.no_report:
        from rdet.report import build_report

        rep = build_report(study.output_dir)
        print()
        print(rep["markdown"])
        print("report files: " + ", ".join(str(x) for x in list(rep["paths"].values()) + rep["plots"]))
    print(f"study finished in {time.time() - start:.0f} s; results under {study.output_dir}")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
