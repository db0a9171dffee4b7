"""``python -m rdet.backbones``: the module form of ``rdet-backbones`` / ``python -m rdet backbones``; the same main,
flags and exit codes."""
from rdet.cli.backbones import main

if __name__ == "__main__":
    raise SystemExit(main())
