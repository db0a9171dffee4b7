"""``python -m rdet.study``: the module form of ``rdet-study`` / ``python -m rdet study``; the same main,
flags and exit codes."""
from rdet.cli.study import main

if __name__ == "__main__":
    raise SystemExit(main())
