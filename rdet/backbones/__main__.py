"""``python -m rdet.backbones [list|catalog]``: the same command as ``python -m rdet backbones``."""
from rdet.cli.backbones import main

if __name__ == "__main__":
    raise SystemExit(main())
