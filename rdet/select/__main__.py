"""``python -m rdet.select``: the module form of ``rdet-select`` / ``python -m rdet select``; the same main,
flags and exit codes."""
from rdet.cli.select import main

if __name__ == "__main__":
    raise SystemExit(main())
