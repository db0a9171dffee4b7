#!/usr/bin/env python
"""Train / evaluate Faster or Mask R-CNN with a converted backbone: ``rdet.cli.train_det``
(``rdet-train-det``), detectron2's flags plus ``--allow-pickle``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from rdet.cli.train_det import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
