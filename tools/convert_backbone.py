#!/usr/bin/env python
"""Convert a ResNet checkpoint into a Detectron2 backbone: ``rdet.cli.convert`` (``rdet-convert``)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from rdet.cli.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
