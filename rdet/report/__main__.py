"""``python -m rdet.report``: the module form of ``rdet-report`` / ``python -m rdet report``; the same main,
flags and exit codes."""
from rdet.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main())
