"""Where datasets live: ``$RDET_DATASETS`` if set, else ``./datasets`` (like detectron2's
``$DETECTRON2_DATASETS``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    return Path(root or os.environ.get("RDET_DATASETS", "datasets")).expanduser()
