"""``python -m rdet.convert``: the module form of ``rdet-convert`` / ``python -m rdet convert``; the same main,
flags and exit codes."""
from rdet.cli.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
