"""``python -m rdet.study [STUDY.yaml]``: run every cell of a study (skipping finished ones), then
print the report. Without an argument: the offline miniature study, configs/study_demo.yaml."""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

from rdet.cli import run_cli
from rdet.config import CONFIG_DIR

DEMO = CONFIG_DIR / "study_demo.yaml"


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rdet.report import build_report
    from rdet.study import run_study

    p = argparse.ArgumentParser(prog="python -m rdet.study", description=__doc__)
    p.add_argument("study", nargs="?", default=str(DEMO), help="study YAML (default: the offline demo)")
    p.add_argument("--no-report", action="store_true", help="run the cells only")
    args = p.parse_args(argv)
    start = time.time()
    study = run_study(args.study)
    if not args.no_report:
        rep = build_report(study.output_dir)
        if study.description:
            print(study.description + "\n")
        print(rep["markdown"])
        print("report files: " + ", ".join(str(x) for x in list(rep["paths"].values()) + rep["plots"]))
    print(f"study finished in {time.time() - start:.0f} s; results under {study.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
